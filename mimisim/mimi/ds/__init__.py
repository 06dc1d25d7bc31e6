"""The second design: draft-robert-mimi-delivery-service (the "ds" profile).

Sans-IO like the rest of :mod:`mimisim.mimi`: wire bodies (:mod:`.wire`), the
hub's core (:mod:`.hub`) and the guest DS's core (:mod:`.guest`). Choices where
the draft is TODO or inconsistent are listed in ``docs/ds-choices.md``.
"""
