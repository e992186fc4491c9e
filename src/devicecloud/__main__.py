from devicecloud.cli import main

main()
