"""The closed loop in a cluster (issue 25): `mlops loop --once` as a CronJob every [loop].schedule.

Rendered (by `up` and `mlops render`) only when [loop].schedule is set. Its own ServiceAccount with a
Role in our namespace only (nothing cluster-wide), holding exactly what one pass touches through the
kubernetes target (targets/kubernetes_deploy.py, kubernetes_rollout.py): get and patch of our
InferenceService, of its deployment-history ConfigMap and of the gateway Deployment (server-side apply
is a PATCH; all three exist once `up` and a first `deploy` ran, so no `create`), and get of Knative
Revisions (the canary's and the baseline's, names the cluster generates). MLflow, Prometheus and the
gateway are reached over HTTP, with credentials from Secrets (secretKeyRef): no value is in the manifest.

concurrencyPolicy Forbid: a pass still running when the next is due means the next is skipped (the
loop's own flock guards one machine; this guards the cluster). backoffLimit 0: a failed pass is not
retried at once; the next schedule starts clean, as the loop's safety rules expect.
"""

from __future__ import annotations

from typing import Any

from mlops_cli.common.errors import ConfigError
from mlops_cli.config.settings import Config

from . import secrets
from .drift import PREDICTIONS_PVC, predictions_affinity, service_overrides
from .image_refs import image_ref
from .objects import container, metadata, pod_security, secret_env, service_account
from .service_env import PREDICTIONS_DIR, SERVICE_SECTIONS, config_env

NAME = "mlops-loop"
HISTORY_SUFFIX = "-deployments"  # targets/kubernetes_deploy.py's history ConfigMap (tests check they agree)
KSERVE_GROUP = "serving.kserve.io"
KNATIVE_GROUP = "serving.knative.dev"


def cron_schedule(every: str) -> str:
    """'15m' -> '*/15 * * * *', '2h' -> '0 */2 * * *', '1d' -> '0 0 * * *'. A cron field repeats within
    its unit, so only periods that divide an hour (minutes) or a day (hours) are exact; others are refused
    rather than run at an uneven rhythm."""
    from mlops_cli.common.time_window import duration_seconds

    seconds = int(duration_seconds(every))
    minutes, rest = divmod(seconds, 60)
    if rest == 0 and minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours, rest = divmod(seconds, 3600)
    if rest == 0 and hours < 24 and 24 % hours == 0:
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if seconds == 86400:
        return "0 0 * * *"
    if seconds == 7 * 86400:
        return "0 0 * * 0"
    raise ConfigError(f"[loop].schedule = {every!r} cannot be a CronJob schedule: a cron field repeats within its "
                      "hour or day, so the period must divide one",
                      hint="use 1m, 5m, 10m, 15m, 20m, 30m, 1h, 2h, 3h, 4h, 6h, 8h, 12h, 1d or 7d")


def role(config: Config) -> dict[str, Any]:
    model = config.serving.model_name
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": metadata(NAME, "loop", config.kubernetes.namespace),
        "rules": [
            {"apiGroups": [KSERVE_GROUP], "resources": ["inferenceservices"], "resourceNames": [model],
             "verbs": ["get", "patch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [model + HISTORY_SUFFIX],
             "verbs": ["get", "patch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["gateway"], "verbs": ["get", "patch"]},
            {"apiGroups": [KNATIVE_GROUP], "resources": ["revisions"], "verbs": ["get"]},
        ],
    }


def role_binding(config: Config) -> dict[str, Any]:
    ns = config.kubernetes.namespace
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": metadata(NAME, "loop", ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": ns}]}


def cron_job(config: Config) -> dict[str, Any]:
    """The pod has no mlops.toml: its config is this env alone. Besides the services' sections it carries
    [loop] and [canary] (the pass's canary and its judge, probe_rps included), with the judge reading the
    cluster's Prometheus and the probe going to the gateway's Service: the edge's certificate is in a Secret
    the Role rightly does not grant (targets/kubernetes_edge.py service_request). And [data] and [feedback]:
    the pod has no dataset, so its retrain pulls the champion's version from [data].remote
    (mlops_cli/loop/champion_data.py), and the live-accuracy trigger needs [feedback]'s floor and window."""
    from .prometheus import PORT as PROMETHEUS_PORT

    ns = config.kubernetes.namespace
    in_cluster = {**service_overrides(config),
                  "canary.prometheus_url": f"http://prometheus.{ns}.svc.cluster.local:{PROMETHEUS_PORT}"}
    env = [*config_env(config, in_cluster, (*SERVICE_SECTIONS, "loop", "canary", "data", "feedback")),
           {"name": "MLOPS_PROJECT__TARGET", "value": "kubernetes"},
           {"name": "MLOPS_KUBERNETES__NAMESPACE", "value": ns},
           {"name": "MLOPS_KUBERNETES__PREDICT_VIA", "value": "service"},
           {"name": "HOME", "value": "/tmp"},
           secret_env("MLOPS_GATEWAY_USER", secrets.GATEWAY_AUTH, "user"),
           secret_env("MLOPS_GATEWAY_PASSWORD", secrets.GATEWAY_AUTH, "password")]
    if secrets.uses_s3_keys(config):
        env += [secret_env("AWS_ACCESS_KEY_ID", secrets.MLFLOW_S3, "AWS_ACCESS_KEY_ID"),
                secret_env("AWS_SECRET_ACCESS_KEY", secrets.MLFLOW_S3, "AWS_SECRET_ACCESS_KEY")]
    c = container(config, "loop", "loop", image_ref(config, "cli"),
                  command=["python", "-m", "mlops_cli", "--json", "loop", "--once", "--target", "kubernetes"],
                  env=env, mounts=[{"name": "predictions", "mountPath": PREDICTIONS_DIR}])
    c["workingDir"] = "/tmp"
    pod = {"serviceAccountName": NAME, "automountServiceAccountToken": True, "restartPolicy": "Never",
           "securityContext": pod_security(),
           "containers": [c],
           "volumes": [{"name": "tmp", "emptyDir": {}},
                       {"name": "predictions", "persistentVolumeClaim": {"claimName": PREDICTIONS_PVC}}]}
    affinity = predictions_affinity(config)   # it mounts the gateways' prediction-log PVC too (the feedback)
    if affinity:
        pod["affinity"] = affinity
    return {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata(NAME, "loop", ns),
        "spec": {"schedule": cron_schedule(config.loop.schedule), "concurrencyPolicy": "Forbid",
                 "startingDeadlineSeconds": 300, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                 "jobTemplate": {"metadata": {"labels": metadata(NAME, "loop")["labels"]},
                                 "spec": {"backoffLimit": 0,
                                          "template": {"metadata": {"labels": metadata(NAME, "loop")["labels"]},
                                                       "spec": pod}}}},
    }


def network_policies(config: Config) -> list[dict[str, Any]]:
    """The namespace denies all ingress and egress by default (charts/network_policies.py); the loop's pod
    may reach MLflow (registry, runs), Prometheus (the canary judge), the gateway (the judge's probe),
    the Kubernetes API and S3 (443/6443, any address: where they are is the cluster's business), and each
    of the three lets it in."""
    from . import gateway, mlflow, prometheus
    from .network_policies import _allow, _anywhere, _egress, _from, _to
    from .objects import selector

    pods = selector("loop")
    return [
        _egress(config, "loop-to-platform", "loop", pods,
                [_to("mlflow", [mlflow.PORT]), _to("prometheus", [prometheus.PORT]), _to("gateway", [gateway.PORT]),
                 _anywhere([443, 6443])]),
        _allow(config, "mlflow-from-loop", "loop", selector("mlflow"), [_from("loop")], [mlflow.PORT]),
        _allow(config, "prometheus-from-loop", "loop", selector("prometheus"), [_from("loop")], [prometheus.PORT]),
        _allow(config, "gateway-from-loop", "loop", selector("gateway"), [_from("loop")], [gateway.PORT]),
    ]


def objects(config: Config) -> list[dict[str, Any]]:
    """Nothing without [loop].schedule: the loop is then run by hand (`mlops loop --once`)."""
    if not config.loop.schedule:
        return []
    return [service_account(config, NAME, "loop"), role(config), role_binding(config), cron_job(config),
            *network_policies(config)]
