from extpack.cli import main

main()
