"""The deferware demo: the language-cookie example, served from a PasteDeploy ini."""
