"""herder.parsers.reasoning"""
