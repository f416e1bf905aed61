from kms.cli.main import main

main()
