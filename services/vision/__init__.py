"""Pure image and box logic, and the answers, shared by the gateway, the clients and the worker. No TensorFlow here.

- ``images``: decode and validate uploads (limits before pixels, EXIF orientation, any mode to RGB).
- ``letterbox``: the model canvas convention of docs/architecture.md, and boxes back to original pixels.
- ``tiling``: overlapping model-sized tiles (plus the whole image) for large images with small objects.
- ``nms``: non-maximum suppression and the merge of detections from several views.
- ``outputs``: a detector's or classifier's output rows to detections or top-k classes.
- ``draw``: boxes and labels drawn on an image, encoding, ``Accept`` negotiation.
- ``labelmap``: class ids to names, in the TF Object Detection API's ``.pbtxt`` format.
- ``results``: the answers (``DetectResult``, ``ClassifyResult``, ``Detection``, ``Box``, ``Classification``) and
  their JSON and protobuf forms, shared by the gateway, the clients and active learning.
- ``boxes``: overlap geometry on boxes.
"""
