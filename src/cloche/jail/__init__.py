"""The jail: every piece of untrusted code runs through ``Runner.run(spec, profile)``."""
