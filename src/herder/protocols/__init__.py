"""herder.protocols"""
