"""herder.observability"""
