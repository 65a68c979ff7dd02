from afbatch.cli import main

main()
