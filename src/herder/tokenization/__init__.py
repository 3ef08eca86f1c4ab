"""herder.tokenization"""
