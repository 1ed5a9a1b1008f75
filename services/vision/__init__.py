"""Pure image and box logic shared by the gateway and the worker. No TensorFlow here.

- ``images``: decode and validate uploads (limits before pixels, EXIF orientation, any mode to RGB).
- ``letterbox``: the model canvas convention of docs/architecture.md, and boxes back to original pixels.
- ``tiling``: overlapping model-sized tiles (plus the whole image) for large images with small objects.
- ``nms``: non-maximum suppression and the merge of detections from several views.
- ``outputs``: a detector's or classifier's output rows to detections or top-k classes.
- ``draw``: boxes and labels drawn on an image, encoding, ``Accept`` negotiation.
- ``labelmap``: class ids to names, in the TF Object Detection API's ``.pbtxt`` format.
- ``boxes``: :class:`Box`, :class:`Detection` and overlap geometry.
"""
