from rolloutctl.cli.entry import run

run()
