"""entra"""
