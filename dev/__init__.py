"""The development host: a small Pyramid app that follows Warehouse's conventions.

It enables warehouse-tuf exactly as Warehouse would, with one
``config.include("warehouse_tuf")``, so the extension can be run, tested and
benchmarked end to end without Warehouse itself.
"""
