"""The Pulumi program behind `mlops up --target eks`, run inline through the Automation API.

One component per concern, composed by `program.build`:

- `network.Network`: VPC across N availability zones, public + private subnets, NAT.
- `cluster.Cluster`: EKS (aws.eks resources directly) with managed node groups in the private subnets.
- `addons.ClusterAddons`: EBS CSI driver, default gp3 StorageClass, Cluster Autoscaler, NVIDIA device plugin.
- `identity.PlatformIdentity`: the cluster's OIDC provider and the platform's IRSA role.
- `storage.ArtifactBucket`: the S3 bucket for MLflow artifacts and the DVC remote.
- `ecr.ImageRepositories`: optional ECR repositories for our images.

Nothing here imports pulumi at package import time: `mlops --help` never pays for it.
"""
