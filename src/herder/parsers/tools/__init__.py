"""herder.parsers.tools"""
