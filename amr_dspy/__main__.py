from amr_dspy.cli import main

main()
