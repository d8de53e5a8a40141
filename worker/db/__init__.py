"""The async database bridge. Importing this package imports no database driver."""
