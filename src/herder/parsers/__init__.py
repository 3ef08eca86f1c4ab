"""herder.parsers"""
