"""The selection service (``pie-retriever serve``) lives here: an HTTP app over saved indexes. Empty until it lands;
see docs/architecture.md for what goes in this room."""
