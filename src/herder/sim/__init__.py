"""herder.sim"""
