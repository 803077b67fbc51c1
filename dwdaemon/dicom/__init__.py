"""dwdaemon.dicom."""
