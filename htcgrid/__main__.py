from htcgrid.cli import main

main()
