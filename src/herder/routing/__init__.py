"""herder.routing"""
