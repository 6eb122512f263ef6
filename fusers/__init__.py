"""Learn-to-combine fusers (LLM-TOPLA, FusionShot, ...) and the models they need.

Nothing here yet beyond the package: the fusers land with issue P3 (see CHANGELOG.md).
"""

__all__: list[str] = []
