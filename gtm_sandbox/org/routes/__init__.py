"""The org REST API's handlers, one module per resource: ``auth`` (the token endpoint),
``versions`` (``/services/data/`` and the resource list), ``query`` (and queryMore),
``limits``, ``sobjects`` (describe and rows), ``collections`` and ``composite`` (and
composite/batch). Each holds a mixin class of handler methods for ``OrgApi`` and, but for
``auth`` (outside ``/services/data/vNN.N/``), an ``install(routes)`` registering them.
"""
