from dgprm.cli import main

main()
