"""The pure core of Tacit: everything whose correctness is a privacy claim.

Nothing in this package imports FastAPI or a database driver (a test checks it).
"""
