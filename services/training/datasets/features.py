"""The ``tf.train.Example`` feature keys of dataset records: the TF Object Detection API's, so records go both ways.

Every record holds one image:

========================================  =========  =====================================================
key                                       type       value
========================================  =========  =====================================================
``image/encoded``                         bytes      the JPEG or PNG file, byte for byte
``image/format``                          bytes      ``jpeg`` or ``png``
``image/filename``                        bytes      the image's path in the source (relative)
``image/source_id``                       bytes      the same path: unique within the dataset
``image/key/sha256``                      bytes      hex sha256 of ``image/encoded``
``image/height``, ``image/width``         int64      the real size in pixels
``image/object/bbox/{xmin,xmax,ymin,ymax}``  float   normalised to [0, 1] by the real width/height
``image/object/class/text``               bytes      class name per box
``image/object/class/label``              int64      label-map id (from 1) per box
``image/object/difficult``                int64      0/1 per box (Pascal VOC's flag)
``image/object/truncated``                int64      0/1 per box
``image/object/view``                     bytes      Pascal VOC's pose per box ("" when none)
``image/class/text``                      bytes      image-level labels (classification, pools; detection:
                                                     the distinct classes of its boxes)
``image/class/label``                     int64      their label-map ids
========================================  =========  =====================================================

Box lists have one entry per box and the same length; an image without boxes has empty lists (a background image).
"""

from __future__ import annotations

ENCODED = "image/encoded"
FORMAT = "image/format"
FILENAME = "image/filename"
SOURCE_ID = "image/source_id"
SHA256 = "image/key/sha256"
HEIGHT = "image/height"
WIDTH = "image/width"
XMIN = "image/object/bbox/xmin"
XMAX = "image/object/bbox/xmax"
YMIN = "image/object/bbox/ymin"
YMAX = "image/object/bbox/ymax"
OBJECT_TEXT = "image/object/class/text"
OBJECT_LABEL = "image/object/class/label"
DIFFICULT = "image/object/difficult"
TRUNCATED = "image/object/truncated"
VIEW = "image/object/view"
IMAGE_TEXT = "image/class/text"
IMAGE_LABEL = "image/class/label"

RECORD_SUFFIX = ".tfrecord"


def shard_name(split: str, index: int, count: int) -> str:
    """``train-00000-of-00002.tfrecord``: the TF convention, so a glob or a count finds every shard."""
    return f"{split}-{index:05d}-of-{count:05d}{RECORD_SUFFIX}"
