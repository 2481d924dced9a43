"""Model families: one file each, found through one table.

A family is a class implementing :class:`~vitexplorer.core.models.families.family.Family` (how
its models are checked, built and loaded) with its adapter, a
:class:`~vitexplorer.core.models.families.base.ViTAdapter` (how capture, fine-tuning, the
analytics and the sanity check see its modules), and one entry in
:data:`~vitexplorer.core.models.families.registry.FAMILIES` (its torch-free facts: names,
library, how a person asks for one of its models). Nothing in this package's top imports torch.
"""
