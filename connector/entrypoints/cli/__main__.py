from connector.entrypoints.cli import main

main()
