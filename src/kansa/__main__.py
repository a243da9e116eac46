from kansa.cli import main

main()
