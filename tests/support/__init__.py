"""What tests share: data factories, a client of the running service, one wait, the settings environment.

Test modules import helpers from here (or a helper module beside them), never from another `test_*.py`.
"""
