from rolloutctl.cli.main import run

run()
