from licentia.cli.main import main

main()
