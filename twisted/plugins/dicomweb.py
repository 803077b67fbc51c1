"""twistd plugin: ``twistd -n dicomweb``."""

from twisted.application.service import ServiceMaker

dicomweb = ServiceMaker("dwdaemon", "dwdaemon.tap", "DICOMweb daemon (dwdaemon)", "dicomweb")
