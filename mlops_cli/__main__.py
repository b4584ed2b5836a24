from mlops_cli.cli.app import main

main()
