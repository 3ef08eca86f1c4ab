"""herder.policies"""
