from nubis.cli import main

main()
