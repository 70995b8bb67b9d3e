"""Adapters to other frameworks. Each module imports its framework at the top, so
``import focalkit`` stays light: ``import focalkit.adapters.xgboost`` needs xgboost, and so on."""
