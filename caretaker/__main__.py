from caretaker.launch import run

run()
