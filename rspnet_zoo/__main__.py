from rspnet_zoo.cli.app import main

main()
