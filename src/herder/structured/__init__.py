"""herder.structured"""
