"""herder.workers"""
