"""Face detection and landmark tracking shared by the avatar backends."""
