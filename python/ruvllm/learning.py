"""Loop bodies (see loops.py). Placeholder bodies until each loop lands."""


def instant_loop(plpy):
    return {}


def background_loop(plpy):
    return {}


def deep_loop(plpy):
    return {}
