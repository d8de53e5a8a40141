"""What runs where: the lifecycle contract (``concern``), which concerns and in what order (``assembly``), what a worker's concerns read (``context``), and the publish hooks (``producer``)."""
