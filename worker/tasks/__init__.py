"""Task bodies, one module per domain; every module here is autodiscovered."""
