"""Operations tooling: the weights catalog and downloader, ``doctor``, ``/gpu``, ``bench``.

Nothing here is on a media path; the CLI sub-commands are thin wrappers around these modules.
"""
