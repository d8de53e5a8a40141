"""What runs in which process: the publish hooks (``producer``), a worker's main process (``main_process``) and its pool processes (``pool_process``)."""
