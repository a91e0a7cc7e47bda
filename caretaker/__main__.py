from caretaker.cli import run

run()
