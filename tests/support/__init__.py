"""Support code the tests share (mock engine, step model, fake node, stand-ins): a package,
imported as `from support import engine`."""
