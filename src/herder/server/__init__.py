"""herder.server"""
