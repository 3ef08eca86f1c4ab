"""herder.loadgen"""
