"""How a song request in plain English becomes controls, and an honest account of how it was read.

People ask for music the way they would ask a friend: "something chill to study to", "not sad,
just mellow acoustic", "funky disco house for a rooftop party", "a waltz for my grandmother's
birthday", "shoegaze in a coffee shop". A keyword scan gets these wrong in ways a musician hears:
"in a coffee shop" becomes A major, "not sad" becomes sad, a genre it does not know becomes pop.
This module reads a prompt in four passes, with no model and no network, so every decision can be
shown to the caller:

1. numbers and notation on the original text (case matters: "in A minor" is a key, "in a minor
   key" is only a mode, "in a coffee shop" is neither): tempo ("92 bpm", "around 90", "90-ish",
   "100-110 bpm"), meter ("3/4", "12/8"), key, length phrases (which are not controls here);
2. one longest-match pass over a single lexicon that holds every kind of phrase (styles and their
   aliases from ``styles.STYLES``, moods, instruments, scenes such as "coffee shop" or "to study
   to", genres the composer does not know with their nearest style, tempo, meter and feel words,
   section words), so "acoustic guitar" is an instrument and not the style alias "acoustic";
3. negation scopes ("not", "no", "without", "nothing too", "anything but", "instead of", ...)
   that end at punctuation or "but/just/rather", turning a mood, genre, instrument, section or
   tempo word into something ruled out;
4. resolution: explicit arguments win, then what the prompt said, then what a scene or a blend
   suggests, then the style's defaults; each field records its value, its source ("argument",
   "prompt", "default", "style default"), the words it came from and a note.

The result is ``(ResolvedParams, interpreted)``; ``interpreted`` is what generate_music returns so
an agent can see what was understood, what was ruled out (``negated``) and what was not used
(``not_understood``, with why).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .params import (
    BPM_MAX,
    BPM_MIN,
    INSTRUMENTS,
    MOODS,
    SECTIONS,
    ControlError,
    ResolvedParams,
    normalise_instrument,
    normalise_section,
)
from .styles import FEELS, METERS, STYLES
from .theory import key_display_name, parse_key

DEFAULT_GENRE = "pop"
_DEFAULT_FALLBACKS = ("pop", "rock", "folk", "house")  # when the prompt rules out the default

# -- lexicon -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """What one phrase means. ``kind`` names the field; ``value`` the canonical value; ``note`` why."""

    kind: str
    value: Any
    note: str = ""


# Style aliases that everyday English also uses as plain descriptors: they name the style only when
# nothing stronger does ("mellow acoustic" is folk, "acoustic rock" is rock played acoustically).
_WEAK_ALIASES = {"acoustic", "groove", "dance", "club", "movie", "church", "swing", "shuffle", "latin",
                 "classical", "score", "roots", "western", "cowboy", "drone", "liquid", "minimal", "praise",
                 "worship", "spiritual", "boogie", "80s", "70s", "eighties", "seventies", "soul", "rap",
                 "dance music", "trailer", "acid", "doom", "hardcore", "wobble", "808s", "irish", "celtic",
                 "brazilian", "ballroom", "industrial", "video game", "game music", "atmospheric",
                 "meditation", "downtempo", "chillout"}

# Adjectival forms people use for a style ("bluesy", "folky").
_STYLE_ADJECTIVES = {"bluesy": "blues", "folky": "folk", "soulful": "r&b", "poppy": "pop", "rocky": "rock",
                     "housey": "house", "jazzy": "jazz", "funky": "funk", "metallic": "metal", "dubby": "reggae",
                     "orchestral": "orchestral", "cinematic": "cinematic", "ambient": "ambient",
                     "disco-y": "disco", "discoey": "disco", "gospel-like": "gospel", "countrified": "country",
                     "afro": "afrobeats", "symphonic": "orchestral", "jazz hop": "lofi hip hop",
                     "jazz-hop": "lofi hip hop"}

# Mood words beyond the mood table's own aliases (everyday request vocabulary).
_MOOD_WORDS: dict[str, str] = {
    "chill": "calm", "chilled out": "calm", "chill out": "calm", "calming": "calm", "soothing": "calm",
    "cozy": "calm", "cosy": "calm", "lazy": "calm", "sleepy": "calm", "quiet": "calm", "tranquil": "calm",
    "ethereal": "calm", "floaty": "calm", "hazy": "calm", "easy going": "calm", "easygoing": "calm",
    "unwind": "calm", "lush": "romantic", "sensual": "romantic", "sexy": "romantic", "loving": "romantic",
    "romance": "romantic", "happy": "happy", "feel good": "happy", "feel-good": "happy", "groovy": "happy",
    "carefree": "happy", "summery": "happy", "hopeful": "happy", "optimistic": "happy", "euphoric": "happy",
    "celebratory": "happy", "festive": "happy", "bouncy": "happy", "lighthearted": "happy",
    "light-hearted": "happy", "whimsical": "happy", "quirky": "happy", "catchy": "happy",
    "sad": "sad", "depressing": "sad", "emotional": "sad", "bittersweet": "sad", "wistful": "sad",
    "heartbreak": "sad", "crying": "sad", "tearful": "sad", "mournful": "sad", "longing": "sad",
    "reflective": "sad", "pensive": "sad", "dark": "dark", "creepy": "dark", "haunting": "dark",
    "mysterious": "dark", "gritty": "dark", "evil": "dark", "scary": "dark", "grim": "dark", "noir": "dark",
    "angry": "energetic", "hyped": "energetic", "high energy": "energetic", "high-energy": "energetic",
    "banger": "energetic", "bangin": "energetic", "motivational": "energetic", "motivating": "energetic",
    "fierce": "energetic", "heavy": "energetic", "fiery": "energetic", "wild": "energetic", "rowdy": "energetic",
    "epic": "epic", "cinematic epic": "epic", "inspiring": "epic", "inspirational": "epic", "heroic": "epic",
    "victorious": "epic", "dramatic": "epic", "massive": "epic", "anthem": "epic", "tense": "tense",
    "suspense": "tense", "edgy": "tense", "stressful": "tense", "frantic": "tense", "nervy": "tense",
}

_INTENSITY = {"very": 1.0, "really": 1.0, "super": 1.0, "extremely": 1.0, "so": 0.9, "totally": 1.0,
              "slightly": 0.3, "a bit": 0.4, "a little": 0.4, "a little bit": 0.35, "kind of": 0.5,
              "kinda": 0.5, "somewhat": 0.5, "mildly": 0.4, "gently": 0.5, "bit": 0.4, "pretty": 0.7}

# Instruments: plural and everyday names onto the instrument table; a note where it is a stand-in.
_INSTRUMENT_WORDS: dict[str, tuple[str, str]] = {
    "keys": ("electric piano", ""), "ep": ("electric piano", ""), "e-piano": ("electric piano", ""),
    "wurlitzer": ("electric piano", "a Wurlitzer plays as the GM electric piano"),
    "fender rhodes": ("rhodes", ""), "grand piano": ("piano", ""), "upright piano": ("piano", ""),
    "acoustic piano": ("piano", ""), "keyboard": ("piano", ""), "keyboards": ("piano", ""),
    "fiddle": ("violin", ""), "fiddles": ("violin", ""), "viola": ("violin", "viola plays as violin"),
    "string section": ("strings", ""), "orchestral strings": ("strings", ""), "string": ("strings", ""),
    "horns": ("brass", ""), "horn section": ("brass", ""), "brass section": ("brass", ""),
    "french horns": ("french horn", ""), "horn": ("french horn", ""),
    "saxes": ("saxophone", ""), "tenor sax": ("saxophone", ""), "alto sax": ("saxophone", ""),
    "808": ("synth bass", "an 808 bass plays as the GM synth bass"),
    "808s": ("synth bass", "an 808 bass plays as the GM synth bass"),
    "sub bass": ("synth bass", ""), "sub-bass": ("synth bass", ""), "bassline": ("bass", ""),
    "bass line": ("bass", ""), "electric bass": ("bass guitar", ""), "double bass": ("upright bass", ""),
    "nylon-string guitar": ("nylon guitar", ""), "classical guitar": ("nylon guitar", ""),
    "spanish guitar": ("nylon guitar", ""), "acoustic guitars": ("acoustic guitar", ""),
    "electric guitars": ("electric guitar", ""), "guitar riffs": ("electric guitar", ""),
    "riffs": ("electric guitar", ""), "power chords": ("distorted guitar", ""),
    "ukulele": ("nylon guitar", "no ukulele in the sound set: a nylon-string guitar stands in"),
    "uke": ("nylon guitar", "no ukulele in the sound set: a nylon-string guitar stands in"),
    "vocals": ("choir", "the composer does not sing: a choir pad stands in for vocals"),
    "voices": ("choir", "the composer does not sing: a choir pad stands in for voices"),
    "vocal": ("choir", "the composer does not sing: a choir pad stands in for vocals"),
    "bells": ("glockenspiel", ""), "chimes": ("celesta", ""),
    "wobble bass": ("synth bass", ""), "reese bass": ("synth bass", ""), "wobbles": ("synth bass", ""),
    "double bass drums": ("drums", ""), "double bass drum": ("drums", ""), "double kick": ("drums", ""),
    "blast beats": ("drums", ""), "kick drum": ("drums", ""),
    "arp": ("arpeggio synth", ""), "arps": ("arpeggio synth", ""), "arpeggios": ("arpeggio synth", ""),
    "synthesizer": ("synth", ""), "synthesizers": ("synth", ""), "orchestra hits": ("strings", ""),
    "bongos": ("percussion", ""), "congas": ("percussion", ""), "tambourine": ("percussion", ""),
    "shaker": ("percussion", ""), "hand drums": ("percussion", ""), "hand percussion": ("percussion", ""),
    "beat": ("drums", ""), "beats": ("drums", ""), "drum kit": ("drums", ""), "drum machine": ("drums", ""),
}
# Named instruments the sound set does not have: not used, and said so.
_UNKNOWN_INSTRUMENTS = ("banjo", "mandolin", "harmonica", "bagpipes", "bagpipe", "didgeridoo", "theremin", "kazoo",
                        "tabla", "erhu", "koto", "shamisen", "guzheng", "oud", "bouzouki", "balalaika", "cajon",
                        "djembe", "turntables", "scratching", "scratches", "record scratches", "vinyl crackle", "rain sounds", "nature sounds",
                        "birdsong", "field recordings", "whistling", "beatbox", "handpan", "steel guitar",
                        "pedal steel", "slide guitar", "cowbell")
# Words that name a style only loosely; read as that style when no other style is named.
_WEAK_HINTS = {"acoustic": "folk", "unplugged": "folk", "beat tape": "lofi hip hop", "boom-bap": "lofi hip hop",
               "beat for rapping": "trap", "instrumental hip hop": "lofi hip hop", "rnb": "r&b"}

# Settings ("in a coffee shop", "to study to", "for a rooftop party"): a mood, maybe a style, maybe a
# tempo hint; always weaker than words that name them directly.
_SCENES: dict[str, tuple[str | None, str | None, float | None, str]] = {
    # phrase: (mood, style, tempo fraction, why)
    "coffee shop": ("calm", "jazz", None, "acoustic, unhurried café music"),
    "coffeehouse": ("calm", "jazz", None, "acoustic, unhurried café music"),
    "cafe": ("calm", "jazz", None, "acoustic, unhurried café music"),
    "café": ("calm", "jazz", None, "acoustic, unhurried café music"),
    "lounge": ("calm", "jazz", None, "lounge music"), "cocktail bar": ("calm", "jazz", None, "lounge music"),
    "hotel lobby": ("calm", "jazz", None, "background lounge music"),
    "elevator": ("calm", "jazz", None, "easy-listening jazz"),
    "dinner party": ("romantic", "jazz", None, "dinner jazz"), "candlelit dinner": ("romantic", "jazz", None,
                                                                                     "dinner jazz"),
    "dinner": ("romantic", "jazz", None, "dinner jazz"), "date night": ("romantic", "r&b", None, "slow jam"),
    "nightclub": ("energetic", "house", None, "club music"), "dance floor": ("energetic", "house", None,
                                                                               "club music"),
    "dancefloor": ("energetic", "house", None, "club music"),
    "festival": ("energetic", "house", None, "festival dance music"),
    "rooftop party": ("happy", "house", None, "an outdoor dance party"),
    "house party": ("happy", "pop", None, "party music"), "party": ("happy", None, 0.7, "party music"),
    "beach": ("happy", "reggae", None, "laid-back island music"), "pool party": ("happy", "reggaeton", None,
                                                                                "summer dance music"),
    "summer": ("happy", None, None, "summer"), "sunny day": ("happy", None, None, "a sunny day"),
    "workout": ("energetic", None, 0.85, "workout music is fast and driving"),
    "work out": ("energetic", None, 0.85, "workout music is fast and driving"),
    "gym": ("energetic", None, 0.85, "workout music is fast and driving"),
    "running": ("energetic", None, 0.85, "running music is fast"), "jogging": ("energetic", None, 0.8, "jogging"),
    "cardio": ("energetic", None, 0.9, "cardio music is fast"),
    "to study to": ("calm", "lofi hip hop", None, "study music is calm, steady lofi"),
    "studying": ("calm", "lofi hip hop", None, "study music is calm, steady lofi"),
    "study": ("calm", "lofi hip hop", None, "study music is calm, steady lofi"),
    "homework": ("calm", "lofi hip hop", None, "study music is calm, steady lofi"),
    "focus": ("calm", "lofi hip hop", None, "focus music is calm and steady"),
    "coding": ("calm", "lofi hip hop", None, "focus music is calm and steady"),
    "reading": ("calm", "ambient", None, "quiet background music"),
    "sleep": ("calm", "ambient", 0.1, "sleep music is slow, soft ambient"),
    "sleeping": ("calm", "ambient", 0.1, "sleep music is slow, soft ambient"),
    "bedtime": ("calm", "ambient", 0.1, "sleep music is slow, soft ambient"),
    "falling asleep": ("calm", "ambient", 0.1, "sleep music is slow, soft ambient"),
    "yoga": ("calm", "ambient", 0.2, "yoga music is calm ambient"),
    "spa": ("calm", "ambient", 0.2, "spa music is calm ambient"),
    "massage": ("calm", "ambient", 0.2, "spa music is calm ambient"),
    "rainy day": ("sad", None, None, "a rainy day"), "rain": ("sad", None, None, "rain"),
    "road trip": ("happy", "rock", None, "driving rock"),
    "night drive": ("energetic", "synthwave", None, "a neon night drive"),
    "late night drive": ("energetic", "synthwave", None, "a neon night drive"),
    "late night": ("calm", None, None, "late at night"), "midnight": ("calm", None, None, "late at night"),
    "wedding": ("romantic", "orchestral", None, "a wedding"), "first dance": ("romantic", "waltz", None,
                                                                            "a first dance"),
    "funeral": ("sad", "orchestral", 0.15, "a funeral"), "memorial": ("sad", "orchestral", 0.15, "a memorial"),
    "campfire": ("calm", "folk", None, "campfire songs"), "camping": ("calm", "folk", None, "campfire songs"),
    "porch": ("calm", "country", None, "front-porch country"), "rodeo": ("energetic", "country", None, "a rodeo"),
    "ranch": ("happy", "country", None, "a ranch"), "saloon": ("happy", "country", None, "a saloon"),
    "forest": ("calm", "ambient", None, "nature ambience"), "nature": ("calm", "ambient", None, "nature ambience"),
    "ocean": ("calm", "ambient", None, "nature ambience"), "mountains": ("calm", "ambient", None,
                                                                          "nature ambience"),
    "outer space": ("calm", "ambient", None, "space ambience"), "space": ("calm", "ambient", None,
                                                                         "space ambience"),
    "boss fight": ("epic", "cinematic", 0.8, "boss-battle music"), "boss battle": ("epic", "cinematic", 0.8,
                                                                                 "boss-battle music"),
    "horror": ("dark", "cinematic", None, "horror score"), "haunted house": ("dark", "cinematic", None,
                                                                              "horror score"),
    "halloween": ("dark", "cinematic", None, "spooky Halloween music"),
    "chase scene": ("tense", "cinematic", 0.85, "action cue"), "action scene": ("tense", "cinematic", 0.8,
                                                                                "action cue"),
    "heist": ("tense", "cinematic", None, "heist cue"),
    "christmas": ("happy", None, None, "a Christmas song"), "holiday": ("happy", None, None, "holiday music"),
    "birthday": ("happy", None, None, "a birthday"), "picnic": ("happy", "folk", None, "a picnic"),
    "stadium": ("epic", "rock", None, "stadium rock"), "arena": ("epic", "rock", None, "arena rock"),
    "karaoke": ("happy", "pop", None, "karaoke pop"), "sunset": ("calm", None, None, "a sunset"),
    "golden hour": ("calm", None, None, "golden hour"), "sunrise": ("happy", None, None, "a sunrise"),
    "morning": ("happy", None, None, "a morning"), "sunday morning": ("calm", None, None, "a lazy Sunday"),
    "tea ceremony": ("calm", "ambient", None, "a quiet ceremony"),
    "breakup": ("sad", None, None, "a breakup"), "break-up": ("sad", None, None, "a breakup"),
    "club": ("energetic", "house", None, "club music"),
    "podcast intro": ("happy", "pop", None, "a short podcast theme"), "podcast": ("happy", "pop", None,
                                                                               "a podcast theme"),
    "youtube intro": ("happy", "pop", None, "a short video theme"), "commercial": ("happy", "pop", None,
                                                                                 "an advert"),
    "advert": ("happy", "pop", None, "an advert"), "slideshow": ("calm", None, None, "a slideshow"),
}

# Genres the composer does not play, each with the nearest style it does and why. The nearest style
# is chosen by a traits similarity (tempo, energy, electronic, acoustic, swing, tags) against every
# Style's ``traits``; ``prefer`` overrides it where a musician would pick differently.
_UNKNOWN_GENRES: dict[str, tuple[dict[str, Any], str, str | None]] = {}


def _g(name: str, tempo: float, energy: float, electronic: float, acoustic: float, swing: float,
       tags: tuple[str, ...], why: str, prefer: str | None = None) -> None:
    _UNKNOWN_GENRES[name] = ({"tempo": tempo, "energy": energy, "electronic": electronic, "acoustic": acoustic,
                              "swing": swing, "tags": tags}, why, prefer)


_g("shoegaze", 90, 0.45, 0.4, 0.5, 0.0, ("texture", "guitar", "chill"), "dreamy, guitar-based, slow washes",
   "ambient")
_g("dream pop", 92, 0.4, 0.5, 0.4, 0.0, ("pop", "texture", "chill"), "hazy, slow pop", "ambient")
_g("post-rock", 100, 0.55, 0.2, 0.7, 0.0, ("guitar", "texture", "epic"), "slow-building instrumental rock",
   "cinematic")
_g("post rock", 100, 0.55, 0.2, 0.7, 0.0, ("guitar", "texture", "epic"), "slow-building instrumental rock",
   "cinematic")
_g("emo", 140, 0.8, 0.1, 0.7, 0.0, ("band", "guitar"), "guitar band music")
_g("screamo", 160, 0.95, 0.1, 0.6, 0.0, ("band", "guitar", "heavy"), "heavy guitar band music")
_g("grunge", 120, 0.8, 0.1, 0.7, 0.0, ("band", "guitar"), "guitar band music")
_g("indie", 118, 0.6, 0.2, 0.6, 0.0, ("band", "guitar"), "guitar band music")
_g("britpop", 120, 0.7, 0.1, 0.7, 0.0, ("band", "guitar"), "guitar band music")
_g("post-punk", 140, 0.75, 0.2, 0.6, 0.0, ("band", "guitar", "dark"), "guitar band music")
_g("surf rock", 150, 0.8, 0.0, 0.7, 0.0, ("band", "guitar", "retro"), "guitar band music")
_g("rockabilly", 170, 0.8, 0.0, 0.8, 0.6, ("band", "guitar", "retro"), "a swung guitar band", "rock")
_g("psychedelic", 110, 0.6, 0.2, 0.6, 0.0, ("band", "guitar", "retro"), "guitar band music")
_g("prog", 120, 0.7, 0.2, 0.6, 0.0, ("band", "guitar"), "guitar band music")
_g("progressive rock", 120, 0.7, 0.2, 0.6, 0.0, ("band", "guitar"), "guitar band music")
_g("math rock", 130, 0.7, 0.1, 0.7, 0.0, ("band", "guitar"), "guitar band music")
_g("sea shanty", 110, 0.6, 0.0, 1.0, 0.0, ("traditional", "acoustic", "vocal"), "a traditional sung folk form")
_g("polka", 120, 0.7, 0.0, 1.0, 0.0, ("traditional", "acoustic", "dance"), "a traditional acoustic dance",
   "folk")
_g("klezmer", 120, 0.6, 0.0, 1.0, 0.1, ("traditional", "acoustic", "dance"), "traditional acoustic dance music",
   "folk")
_g("flamenco", 120, 0.7, 0.0, 1.0, 0.0, ("traditional", "acoustic", "guitar", "latin"),
   "acoustic guitar music", "folk")
_g("bluegrass banjo", 120, 0.6, 0.0, 1.0, 0.2, ("acoustic", "american", "guitar"), "acoustic string band")
_g("zydeco", 120, 0.7, 0.0, 0.9, 0.3, ("american", "acoustic", "dance"), "acoustic American dance music",
   "country")
_g("cajun", 120, 0.6, 0.0, 0.9, 0.2, ("american", "acoustic", "dance"), "acoustic American dance music",
   "country")
_g("mariachi", 130, 0.7, 0.0, 1.0, 0.0, ("latin", "acoustic", "traditional"), "acoustic Latin band music",
   "folk")
_g("cumbia", 95, 0.7, 0.3, 0.7, 0.0, ("latin", "dance", "percussion"), "Latin dance rhythm", "reggaeton")
_g("salsa", 180, 0.8, 0.0, 0.9, 0.1, ("latin", "dance", "percussion"), "Latin dance music", "bossa nova")
_g("merengue", 140, 0.8, 0.2, 0.7, 0.0, ("latin", "dance", "caribbean"), "Caribbean Latin dance",
   "reggaeton")
_g("bachata", 125, 0.5, 0.1, 0.9, 0.0, ("latin", "guitar", "dance"), "romantic Latin guitar music",
   "bossa nova")
_g("tango", 120, 0.6, 0.0, 1.0, 0.0, ("latin", "dance", "acoustic"), "acoustic Latin dance", "bossa nova")
_g("calypso", 110, 0.6, 0.0, 0.9, 0.2, ("caribbean", "offbeat"), "Caribbean music", "reggae")
_g("soca", 125, 0.85, 0.4, 0.5, 0.0, ("caribbean", "dance"), "Caribbean dance music", "afrobeats")
_g("zouk", 95, 0.6, 0.4, 0.5, 0.0, ("caribbean", "dance", "latin"), "Caribbean dance music", "reggaeton")
_g("kizomba", 90, 0.5, 0.4, 0.5, 0.0, ("african", "dance"), "African dance music", "afrobeats")
_g("gqom", 122, 0.8, 0.9, 0.1, 0.0, ("african", "dance", "electronic"), "South African dance music",
   "afrobeats")
_g("bhangra", 120, 0.9, 0.3, 0.6, 0.0, ("dance", "percussion"), "percussive dance music", "afrobeats")
_g("bollywood", 115, 0.7, 0.5, 0.5, 0.0, ("pop", "dance", "vocal"), "film pop", "pop")
_g("city pop", 110, 0.6, 0.6, 0.3, 0.0, ("pop", "retro", "80s"), "80s Japanese pop", "pop")
_g("hyperpop", 130, 0.85, 0.8, 0.1, 0.0, ("pop", "vocal", "dance"), "maximal electronic pop", "pop")
_g("chiptune", 140, 0.75, 1.0, 0.0, 0.0, ("electronic", "retro"), "8-bit retro electronic", "synthwave")
_g("8-bit", 140, 0.75, 1.0, 0.0, 0.0, ("electronic", "retro"), "8-bit retro electronic", "synthwave")
_g("new wave", 130, 0.7, 0.8, 0.2, 0.0, ("electronic", "retro", "80s"), "80s synth-led music", "synthwave")
_g("italo", 120, 0.8, 0.6, 0.3, 0.1, ("dance", "retro", "funk", "soul"), "retro synth dance", "disco")
_g("trance", 138, 0.85, 1.0, 0.0, 0.0, ("electronic", "dance", "club"), "fast electronic dance music",
   "techno")
_g("psytrance", 145, 0.9, 1.0, 0.0, 0.0, ("electronic", "dance", "club"), "fast electronic dance music",
   "techno")
_g("hardstyle", 150, 1.0, 1.0, 0.0, 0.0, ("electronic", "dance", "heavy"), "hard fast electronic dance music",
   "techno")
_g("eurodance", 135, 0.85, 0.9, 0.0, 0.0, ("electronic", "dance", "club"), "electronic dance music", "house")
_g("electro", 125, 0.8, 1.0, 0.0, 0.0, ("electronic", "dance", "club"), "electronic dance music", "house")
_g("big room", 128, 0.95, 1.0, 0.0, 0.0, ("electronic", "dance", "club"), "electronic dance music", "house")
_g("jersey club", 140, 0.9, 0.9, 0.0, 0.0, ("electronic", "dance", "club"), "club music", "house")
_g("2-step", 132, 0.7, 0.9, 0.1, 0.2, ("electronic", "dance", "uk"), "UK garage", "house")
_g("breakbeat", 135, 0.8, 0.9, 0.1, 0.0, ("electronic", "breakbeat", "uk"), "broken-beat electronic",
   "drum and bass")
_g("footwork", 160, 0.85, 0.9, 0.0, 0.0, ("electronic", "breakbeat"), "fast broken-beat electronic",
   "drum and bass")
_g("idm", 100, 0.35, 0.8, 0.2, 0.0, ("electronic", "texture", "ambient"), "experimental electronic", "ambient")
_g("electronica", 100, 0.4, 0.8, 0.2, 0.0, ("electronic", "texture", "chill", "ambient"),
   "electronic listening music", "ambient")
_g("electronic", 122, 0.7, 1.0, 0.0, 0.0, ("electronic", "dance"), "electronic music (a family, not one style)",
   "house")
_g("edm", 126, 0.9, 1.0, 0.0, 0.0, ("electronic", "dance", "club"), "electronic dance music", "house")
_g("trip hop", 85, 0.4, 0.6, 0.4, 0.2, ("hip hop", "chill", "dark"), "slow, dark hip-hop beats",
   "lofi hip hop")
_g("jazz rap", 90, 0.5, 0.4, 0.6, 0.5, ("hip hop", "jazz"), "jazz-sampling hip hop", "lofi hip hop")
_g("g-funk", 95, 0.6, 0.6, 0.3, 0.2, ("hip hop", "funk", "groove"), "funk-based hip hop", "funk")
_g("grime", 140, 0.85, 0.9, 0.0, 0.0, ("urban", "uk", "dark", "808"), "dark UK rap beats", "drill")
_g("cloud rap", 140, 0.5, 0.9, 0.1, 0.0, ("hip hop", "urban", "808"), "airy trap beats", "trap")
_g("emo rap", 140, 0.6, 0.9, 0.1, 0.0, ("hip hop", "urban", "808"), "melancholy trap beats", "trap")
_g("doo-wop", 80, 0.45, 0.0, 0.9, 0.5, ("soul", "vocal", "retro"), "50s vocal group R&B", "r&b")
_g("doo wop", 80, 0.45, 0.0, 0.9, 0.5, ("soul", "vocal", "retro"), "50s vocal group R&B", "r&b")
_g("lounge", 100, 0.3, 0.2, 0.8, 0.6, ("jazz", "chill"), "easy-listening jazz", "jazz")
_g("ragtime", 100, 0.6, 0.0, 1.0, 0.1, ("jazz", "acoustic"), "early piano jazz", "jazz")
_g("dixieland", 180, 0.8, 0.0, 1.0, 0.7, ("jazz", "acoustic"), "early band jazz", "jazz")
_g("nu jazz", 120, 0.5, 0.3, 0.7, 0.6, ("jazz", "improvised", "acoustic"), "electronic jazz", "jazz")
_g("acid jazz", 110, 0.7, 0.3, 0.6, 0.3, ("jazz", "funk", "groove"), "jazz-funk", "funk")
_g("neoclassical", 80, 0.35, 0.1, 0.9, 0.0, ("classical", "acoustic"), "modern classical", "orchestral")
_g("opera", 90, 0.6, 0.0, 1.0, 0.0, ("classical", "vocal"), "classical vocal music", "orchestral")
_g("musical", 110, 0.65, 0.1, 0.8, 0.0, ("orchestral", "vocal", "film"), "show music", "orchestral")
_g("show tune", 110, 0.65, 0.1, 0.8, 0.0, ("orchestral", "vocal"), "show music", "orchestral")
_g("march", 116, 0.7, 0.0, 1.0, 0.0, ("orchestral", "classical"), "a march for band or orchestra",
   "orchestral")
_g("fanfare", 110, 0.8, 0.0, 1.0, 0.0, ("orchestral", "epic"), "brass fanfare", "orchestral")
_g("lullaby", 72, 0.1, 0.5, 0.5, 0.0, ("chill", "ambient", "texture"), "a gentle, slow song for sleep", "ambient")
_g("new age", 70, 0.15, 0.6, 0.5, 0.0, ("ambient", "chill"), "calm meditative music", "ambient")
_g("chillstep", 140, 0.45, 1.0, 0.0, 0.0, ("electronic", "bass", "chill"), "mellow dubstep", "dubstep")
_g("happy hardcore", 170, 0.95, 1.0, 0.0, 0.0, ("electronic", "dance", "breakbeat"), "fast euphoric rave music")
_g("latin jazz", 120, 0.6, 0.0, 1.0, 0.1, ("latin", "jazz", "acoustic"), "Afro-Cuban jazz, straight eighths",
   "bossa nova")
_g("witch house", 70, 0.5, 1.0, 0.0, 0.0, ("electronic", "dark"), "dark slow electronic", "ambient")


# Suffixes that mark a word as a genre the lexicon does not list, with the family it belongs to.
_GENRE_SUFFIXES = (("core", "metal"), ("wave", "synthwave"), ("step", "dubstep"), ("hop", "lofi hip hop"),
                   ("tronica", "ambient"), ("punk", "rock"), ("gaze", "ambient"), ("metal", "metal"),
                   ("rock", "rock"), ("pop", "pop"), ("house", "house"), ("techno", "techno"), ("jazz", "jazz"),
                   ("funk", "funk"), ("grass", "country"), ("billy", "rock"))

_TEMPO_WORDS: dict[str, float] = {
    "very fast": 1.0, "very slow": 0.0, "super fast": 1.0, "super slow": 0.0, "fast": 0.9, "quick": 0.85,
    "uptempo": 0.85, "up-tempo": 0.85, "up tempo": 0.85, "speedy": 0.9, "rapid": 0.9, "brisk": 0.75,
    "faster": 0.8, "slow": 0.1, "slower": 0.25, "downtempo": 0.15, "down-tempo": 0.15, "leisurely": 0.2,
    "mid-tempo": 0.5, "midtempo": 0.5, "mid tempo": 0.5, "medium tempo": 0.5, "moderate tempo": 0.5,
    "ballad": 0.1, "slow jam": 0.1, "power ballad": 0.2, "slow-burning": 0.2, "slow burn": 0.2,
}
_TEMPO_MULTIPLIERS = {"half-time": 0.5, "half time": 0.5, "halftime": 0.5, "double-time": 2.0,
                      "double time": 2.0}
_METER_WORDS = {"three-four": "3/4", "three four": "3/4", "in three": "3/4", "triple meter": "3/4",
                "triple time": "3/4", "compound time": "6/8", "compound meter": "6/8", "common time": "4/4",
                "four on the floor": "4/4", "four-on-the-floor": "4/4", "six-eight": "6/8", "twelve-eight": "12/8"}
_FEEL_WORDS = {"swing": "swing", "swung": "swing", "swinging": "swing", "swingy": "swing", "shuffle": "shuffle",
               "shuffled": "shuffle", "shuffling": "shuffle", "triplet feel": "shuffle", "triplet groove": "shuffle",
               "straight": "straight", "straight eighths": "straight", "straight feel": "straight",
               "bouncy swing": "swing"}
_SECTION_WORDS = {"intro": "intro", "verse": "verse", "chorus": "chorus", "bridge": "bridge", "drop": "drop",
                  "build": "build", "buildup": "build", "build-up": "build", "build up": "build",
                  "breakdown": "breakdown", "break down": "breakdown", "solo": "solo", "outro": "outro",
                  "hook": "hook", "pre-chorus": "prechorus", "prechorus": "prechorus", "pre chorus": "prechorus",
                  "interlude": "interlude", "refrain": "chorus", "coda": "outro", "ending": "outro"}
_SECTION_PLURALS = {"verses": "verse", "choruses": "chorus", "bridges": "bridge", "drops": "drop",
                    "builds": "build", "breakdowns": "breakdown", "solos": "solo", "hooks": "hook",
                    "interludes": "interlude", "refrains": "chorus"}
_NUMBER_WORDS = {"one": 1, "a": 1, "an": 1, "single": 1, "two": 2, "2": 2, "three": 3, "3": 3, "four": 4,
                 "4": 4, "1": 1, "couple of": 2, "a couple of": 2, "double": 2}
_VOCAL_ASKS = ("lyrics", "singing", "singer", "sung", "rap verse", "rapping", "words", "female vocals",
               "male vocals", "female vocalist", "male vocalist", "vocalist", "a cappella", "acapella")
_NO_VOCALS = ("instrumental", "no-vocal", "vocal-free", "vocalless")
_DRUMLESS = ("drumless", "beatless", "no-drum", "drum-free")
_NOT_CONTROLS: dict[str, str] = {
    "loud": "loudness is mastered to -14 LUFS; ask for a mood such as 'energetic' for intensity",
    "louder": "loudness is mastered to -14 LUFS; ask for a mood such as 'energetic' for intensity",
    "key change": "modulation is the style's own choice (e.g. a pop last chorus up a step); it cannot be "
                  "asked for in words",
    "modulation": "modulation is the style's own choice; it cannot be asked for in words",
    "fade out": "pieces end on a cadence and are not faded; an outro section is kept",
    "fade-out": "pieces end on a cadence and are not faded; an outro section is kept",
    "fading out": "pieces end on a cadence and are not faded; an outro section is kept",
    "seamless loop": "pieces are not made to loop seamlessly",
    "loopable": "pieces are not made to loop seamlessly",
    "lo-fi crackle": "no noise or vinyl layer is added",
    "reverb": "effects are not controllable from text", "distortion": "effects are not controllable from text",
    "autotune": "the composer does not sing", "auto-tune": "the composer does not sing",
}

_NEG_CUES = ("not", "no", "without", "w/o", "nothing", "never", "don't", "dont", "do not", "doesn't",
             "does not", "isn't", "shouldn't", "avoid", "avoiding", "skip", "minus", "except", "anything but",
             "instead of", "rather than", "less", "zero", "nor", "neither", "none", "lose the", "ditch the",
             "no more", "free of")
_SCOPE_END_WORDS = {"but", "just", "rather", "instead", "only", "yet", "though", "although", "more",
                    "make", "with", "please", "that", "which", "for", "in", "at", "like"}
_SCOPE_CONTINUE = {"and", "or", "nor", "too", "any", "the", "a", "an", "overly", "very", "so", "much", "real",
                   "really", "at", "all", "super", "heavy", "big", "loud", "of", "want", "it", "to", "be", "sound",
                   "feel", "make", "is", "too", "anything", "stuff", "something", "kind", "type"}


def _canon(text: str) -> str:
    return " ".join(text.lower().split())


def _build_lexicon() -> dict[str, list[Effect]]:
    lex: dict[str, list[Effect]] = {}

    def add(phrase: str, eff: Effect) -> None:
        lst = lex.setdefault(_canon(phrase), [])
        if not any(e.kind == eff.kind and e.value == eff.value for e in lst):
            lst.append(eff)

    for name, style in STYLES.items():
        for phrase in (name, *style.aliases):
            weak = phrase in _WEAK_ALIASES
            add(phrase, Effect("weak_genre" if weak else "genre", name, "" if phrase == name else
                               f"'{phrase}' is played as {name}"))
    for word, name in _WEAK_HINTS.items():
        if name in STYLES and _canon(word) not in lex:
            add(word, Effect("weak_genre", name, f"'{word}' is played as {name}"))
    for word, name in _STYLE_ADJECTIVES.items():
        if name in STYLES:
            add(word, Effect("genre", name, f"'{word}' is played as {name}"))
    for name, (traits, why, prefer) in _UNKNOWN_GENRES.items():
        if _canon(name) not in lex:
            add(name, Effect("unknown_genre", name, why))
    for name, mood in MOODS.items():
        for phrase in (name, *mood.aliases):
            add(phrase, Effect("mood", name))
    for phrase, name in _MOOD_WORDS.items():
        if name in MOODS:
            add(phrase, Effect("mood", name))
    for name in INSTRUMENTS:
        add(name, Effect("instrument", name))
        if not name.endswith("s"):
            add(name + ("es" if name.endswith(("x", "h")) else "s"), Effect("instrument", name))
    for phrase, (name, note) in _INSTRUMENT_WORDS.items():
        if name in INSTRUMENTS:
            add(phrase, Effect("instrument", name, note))
    for phrase in _UNKNOWN_INSTRUMENTS:
        add(phrase, Effect("unknown_instrument", phrase))
    for phrase, scene in _SCENES.items():
        add(phrase, Effect("scene", phrase, scene[3]))
    for phrase, frac in _TEMPO_WORDS.items():
        add(phrase, Effect("tempo_word", frac))
    for phrase, mult in _TEMPO_MULTIPLIERS.items():
        add(phrase, Effect("tempo_mult", mult))
    for phrase, meter in _METER_WORDS.items():
        add(phrase, Effect("meter", meter))
    for phrase, feel in _FEEL_WORDS.items():
        add(phrase, Effect("feel", feel))
    for phrase, sec in {**_SECTION_WORDS, **_SECTION_PLURALS}.items():
        if sec in SECTIONS:
            add(phrase, Effect("section", sec))
    for phrase in _VOCAL_ASKS:
        add(phrase, Effect("vocal_ask", phrase))
    for phrase in _NO_VOCALS:
        add(phrase, Effect("no_vocals", phrase))
    for phrase in _DRUMLESS:
        add(phrase, Effect("drumless", phrase))
    for phrase, why in _NOT_CONTROLS.items():
        add(phrase, Effect("not_control", phrase, why))
    for phrase in _INTENSITY:
        add(phrase, Effect("intensity", _INTENSITY[phrase]))
    # "ballad" is a tempo and a mood hint; "waltz" is a style and a meter (the style says 3/4 itself)
    add("ballad", Effect("mood_hint", "romantic", "a ballad"))
    add("power ballad", Effect("weak_genre", "rock", "'power ballad' is played as rock"))
    add("anthem", Effect("mood", "epic"))
    return lex


_LEXICON = _build_lexicon()
_WORD = r"[\w&'#♯♭]"


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    alts = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<![\w&'-])(?:{alts})(?![\w&'-])", re.IGNORECASE)


_LEX_RE = _phrase_pattern(list(_LEXICON))
_NEG_RE = _phrase_pattern(list(_NEG_CUES))


# -- pass 1: numbers and notation ------------------------------------------------------------------
_APPROX = r"(?:at|around|about|roughly|approximately|approx\.?|~|@|tempo(?:\s+of)?:?|bpm:?)"
_BPM_RE = re.compile(
    rf"(?:(?P<cue>{_APPROX})\s*)?(?P<a>\d{{2,4}}(?:\.\d+)?)(?:\s*(?:-|–|to)\s*(?P<b>\d{{2,3}}(?:\.\d+)?))?"
    r"\s*(?P<ish>-?\s*ish)?\s*(?:bpm|b\.p\.m\.|beats\s+per\s+minute|beats\s+a\s+minute|beats/min)\b"
    r"|between\s+(?P<c>\d{2,3})\s+and\s+(?P<d>\d{2,3})\s*(?:bpm|beats per minute)\b"
    r"|\b(?:bpm|tempo)\s*(?:of|:|=|at)?\s*(?P<e>\d{2,3})\b", re.IGNORECASE)
_LOOSE_BPM_RE = re.compile(
    r"(?:\b(?P<cue>at|around|about|roughly|~)\s*(?P<a>\d{2,3})(?P<ish>\s*-?\s*ish)?|\b(?P<b>\d{2,3})\s*-?\s*ish)"
    r"(?!\s*(?:%|percent|seconds?|secs?|s\b|minutes?|mins?|bars?|years?|people|songs?|tracks?|\d|/))",
    re.IGNORECASE)
_METER_RE = re.compile(r"(?<![\d/])(\d{1,2})\s*/\s*(\d{1,2})(?![\d/])(?:\s*time)?")
_DURATION_RE = re.compile(
    r"\b(\d+(?:\.\d+)?)\s*(?:-\s*)?(seconds?|secs?|minutes?|mins?|min|sec)\b(?:\s+long)?"
    r"|\b(?:a|one|two|three|four|five|half\s+a)\s+minutes?(?:\s+long)?\b"
    r"|\b(\d{1,2}|[1-4]0)s\s+(?=clip|loop|track|song|piece|jingle|intro)", re.IGNORECASE)
_DECADE_RE = re.compile(r"\b(?:the\s+)?(?:19)?([5-9]0)(?:'s|s)\b|\b(20[0-2]0)s\b", re.IGNORECASE)
_ACC = r"(?:#|♯|b|♭|-sharp|-flat|\s+sharp|\s+flat)"
_MODE = r"(?:major|minor|maj|min|dur|moll)"
_KEY_PATTERNS = [
    # mode only: "in a minor key", "minor-key", "in minor"
    ("mode", re.compile(r"\b(?:(?i:in)\s+(?:a\s+)?)?(?i:(?P<m>minor|major))(?:\s*-\s*|\s+)(?i:key|tonality|mode)\b"
                        r"|\b(?i:in)\s+(?i:(?P<m2>minor|major))\b(?!\s*(?:key|scale))")),
    # "in A minor", "key of F#", "in the key of E", "in Bb", "in c# minor", "in Am"
    ("key", re.compile(rf"\b(?i:in(?:\s+the\s+key\s+of)?|key(?:\s+of)?\s*:?|key:)\s+"
                       rf"(?P<k>[A-G]{_ACC}?(?:\s*(?i:{_MODE})\b|m\b)?|[a-g]{_ACC}?\s*(?i:major|minor)\b"
                       r"(?=\s*(?:$|[,.;:!?)]|(?i:and|with|at|for|please|key|scale|mode)\b))"
                       rf"|[a-g](?:#|♯|-sharp|-flat|\s+sharp|\s+flat)\b)(?![\w#♯♭])")),
    # "Bb major", "E minor" anywhere (capital letter)
    ("key", re.compile(rf"(?<![\w'])(?P<k>[A-G]{_ACC}?\s*(?i:major|minor))\b")),
]


_ARTIST_RE = re.compile(r"\b(?i:like|in\s+the\s+style\s+of|sounds?\s+like|similar\s+to|inspired\s+by|a\s+la|à\s+la|"
                        r"reminiscent\s+of|vibes?\s+of)\s+(?:(?i:the)\s+)?"
                        r"(?P<name>[A-Z][\w'&.!-]*(?:\s+(?:(?:&|and|of|the)\s+)?[A-Z0-9][\w'&.!-]*){0,3})")


@dataclass
class Span:
    """A matched phrase: its place in the prompt, the words as written, and what they mean."""

    start: int
    end: int
    words: str
    effects: list[Effect]
    negated: str | None = None  # the negation cue's words when inside a negation scope
    neg_start: int | None = None  # where that cue starts
    modifier: bool = False  # a genre used as an influence ("jazz-inspired", "funky")
    count: int | None = None  # "two verses"
    intensity: float | None = None
    adjective: str | None = None
    word_start: int | None = None  # where a count or adjective before it starts ("two verses", "big drop")


@dataclass
class Reading:
    """Everything the prompt text says, before arguments and defaults are merged in."""

    prompt: str
    bpm: tuple[float, str, str | None] | None = None  # (value, words, note)
    key: tuple[str, str] | None = None  # (key text for parse_key, words)
    mode_only: tuple[str, str] | None = None  # (mode, words)
    meter: tuple[str, str, str | None] | None = None
    spans: list[Span] = field(default_factory=list)
    not_understood: list[dict[str, str]] = field(default_factory=list)
    structure_list: tuple[list[str], str] | None = None

    def neg_words(self, s: Span) -> str:
        """The words of a negated span as written, from its cue ("nothing too dark")."""
        return " ".join(self.prompt[s.neg_start if s.neg_start is not None else s.start:s.end].split())

    def of(self, *kinds: str, negated: bool | None = False) -> list[tuple[Span, Effect]]:
        """(span, effect) pairs of these kinds, in prompt order; negated=None for both polarities."""
        out = []
        for s in self.spans:
            if negated is not None and bool(s.negated) != negated:
                continue
            for e in s.effects:
                if e.kind in kinds:
                    out.append((s, e))
        return out


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def _nu(reading: Reading, text: str, why: str) -> None:
    if not any(n["text"] == text for n in reading.not_understood):
        reading.not_understood.append({"text": text, "why": why})


def read_prompt(prompt: str) -> Reading:
    """Pass 1-3 on a prompt: what it says, field by field, without arguments or defaults."""
    r = Reading(prompt=prompt or "")
    text = (prompt or "").replace("’", "'").replace("‘", "'")
    # "reggae-inspired": the hyphen joins a style to a modifier word; a space keeps offsets and lets it match
    text = re.sub(r"(?<=\w)-(?=(?:inspired|influenced|tinged|flavou?red|infused|style|esque|ish|like|based)\b)",
                  " ", text, flags=re.IGNORECASE)
    # artist references ("like Daft Punk", "in the style of Adele") are not styles: say so, don't misread them
    for m in _ARTIST_RE.finditer(text):
        name = m.group("name").strip()
        if _canon(name) in _LEXICON or _canon(name) in STYLES:
            continue
        _nu(r, m.group(0).strip(), "an artist reference; the interpreter knows styles, not artists: name the "
                                   "style (e.g. 'funky house') to steer it")
        text = _blank(text, m.start("name"), m.start("name") + len(m.group("name").rstrip()))
    # tempo numbers: the first one counts, others are reported
    for m in _BPM_RE.finditer(text):
        if m.group("a"):
            a = float(m.group("a"))
            b = float(m.group("b")) if m.group("b") else None
            approx = bool(m.group("cue") and m.group("cue").lower() not in ("at", "@", "bpm", "bpm:")
                          and not m.group("cue").lower().startswith("tempo")) or bool(m.group("ish"))
        elif m.group("c"):
            a, b, approx = float(m.group("c")), float(m.group("d")), False
        else:
            a, b, approx = float(m.group("e")), None, False
        value = (a + b) / 2 if b else a
        note = (f"a range: its middle, {value:g} bpm" if b else
                f"'{m.group(0).strip()}' is approximate: {value:g} bpm exactly" if approx else None)
        if r.bpm is None:
            r.bpm = (value, m.group(0).strip(), note)
        else:
            _nu(r, m.group(0).strip(), f"a second tempo; the first one ({r.bpm[1]}) is used")
        text = _blank(text, m.start(), m.end())
    # length phrases are the duration_s argument's business
    for m in _DURATION_RE.finditer(text):
        _nu(r, m.group(0).strip(), "the length is the duration_s argument, not the prompt")
        text = _blank(text, m.start(), m.end())
    if r.bpm is None:
        for m in _LOOSE_BPM_RE.finditer(text):
            value = float(m.group("a") or m.group("b"))
            if BPM_MIN <= value <= BPM_MAX:
                r.bpm = (value, m.group(0).strip(), f"'{m.group(0).strip()}' read as a tempo: {value:g} bpm")
                text = _blank(text, m.start(), m.end())
                break
    if r.bpm is None:  # "minimal techno, hypnotic, 128": a lone number between commas is a tempo
        for m in re.finditer(r"(?:^|[,;])\s*(?P<n>\d{2,3})\s*(?=[,;.!]|$)", text):
            value = float(m.group("n"))
            if 60 <= value <= 200:
                r.bpm = (value, m.group("n"), f"the lone number {value:g} read as a tempo")
                text = _blank(text, m.start("n"), m.end("n"))
                break
    for m in _METER_RE.finditer(text):
        meter = f"{int(m.group(1))}/{int(m.group(2))}"
        words = m.group(0).strip()
        if meter == "2/4" or meter == "2/2":
            meter, note = "4/4", f"{words} has the same pulse as 4/4 and is written as 4/4"
        else:
            note = None
        if meter in METERS:
            if r.meter is None:
                r.meter = (meter, words, note)
            elif r.meter[0] != meter:
                _nu(r, words, f"a second meter; the first one ({r.meter[1]}) is used")
        else:
            _nu(r, words, f"meter {meter} is not available; allowed: {', '.join(METERS)}")
        text = _blank(text, m.start(), m.end())
    # keys on the case-preserving text
    for kind, pat in _KEY_PATTERNS:
        for m in pat.finditer(text):
            if kind == "mode":
                mode = (m.group("m") or m.group("m2")).lower()
                if r.mode_only is None and r.key is None:
                    r.mode_only = (mode, m.group(0).strip())
                text = _blank(text, m.start(), m.end())
                continue
            k = m.group("k")
            k_norm = re.sub(r"\s+", " ", k).strip()
            k_norm = re.sub(r"(?i)^([a-g])\s*(sharp|flat)", lambda x: x.group(1) + ("#" if x.group(2).lower()
                                                                                       == "sharp" else "b"), k_norm)
            k_norm = re.sub(r"(?<=[A-Ga-g#b♯♭])m$", " minor", k_norm)
            if parse_key(k_norm) is None:
                continue
            if r.key is None:
                r.key = (k_norm, m.group(0).strip())
            elif parse_key(k_norm)[:2] != parse_key(r.key[0])[:2]:  # type: ignore[index]
                _nu(r, m.group(0).strip(), f"a second key; the first one ({r.key[1]}) is used")
            text = _blank(text, m.start(), m.end())
    # decades: an era the composer knows ("80s" synthwave, "70s" disco) is matched by the lexicon;
    # others are said not to be used
    for m in _DECADE_RE.finditer(text):
        word = m.group(0).strip().lower().replace("the ", "").replace("19", "", 1).replace("'", "")
        if _canon(word) not in _LEXICON:
            _nu(r, m.group(0).strip(), "an era the composer has no style for; the style's own sound is used")
            text = _blank(text, m.start(), m.end())
    # pass 2: one longest-match scan over the whole lexicon
    lower = text
    for m in _LEX_RE.finditer(lower):
        words = _canon(m.group(0))
        r.spans.append(Span(m.start(), m.end(), m.group(0), list(_LEXICON[words])))
    _mark_negation(r, text)
    _mark_modifiers(r, text)
    _mark_counts_and_adjectives(r, text)
    _unknown_genre_words(r, text)
    _structure_list(r, text)
    _in_a_places(r, text)
    return r


def _mark_negation(r: Reading, text: str) -> None:
    """Mark spans inside a negation scope: it starts at a cue and ends at punctuation, a contrast word
    ("but", "just", "rather") or after six words; "and"/"or" continue it ("no drums or bass")."""
    for cue in _NEG_RE.finditer(text):
        cue_words = _canon(cue.group(0))
        pos = cue.end()
        words_seen = 0
        first_kind: str | None = None
        last: Span | None = None
        for tok in re.finditer(r"[,.;:!?()]|[^\s,.;:!?()]+", text[pos:]):
            t = tok.group(0).lower()
            abs_start = pos + tok.start()
            if t in ",.;:!?()" or t == "but" or (t in _SCOPE_END_WORDS and words_seen > 0 and t != "with"):
                break  # "nothing but drums" keeps the drums
            if t == "with" and cue_words not in ("without", "w/o"):
                break
            span = next((s for s in r.spans if s.start <= abs_start < s.end), None)
            if span is not None and span is last:
                continue  # the rest of a multi-word phrase
            last = span
            if span is not None:
                kinds = {e.kind for e in span.effects}
                if kinds & {"intensity"} or not kinds - {"intensity"}:
                    continue
                kind = "mood" if kinds & {"mood", "mood_hint"} else "genre" if kinds & {
                    "genre", "weak_genre", "unknown_genre"} else "other"
                if first_kind in ("mood", "genre") or (first_kind is not None and kind in ("mood", "genre")
                                                      and kind != first_kind):
                    break
                if span.negated is None:
                    span.negated = cue.group(0).strip()
                    span.neg_start = cue.start()
                first_kind = first_kind or kind
                words_seen += len(span.words.split())
                continue
            if t in _SCOPE_CONTINUE or t.endswith("-"):
                continue
            words_seen += 1
            if words_seen > 6 or (first_kind is not None and t not in _SCOPE_CONTINUE):
                break


def _mark_modifiers(r: Reading, text: str) -> None:
    """Genres used as an influence: "jazz-inspired", "with reggae vibes", "funky" before a style noun."""
    for s in r.spans:
        if not any(e.kind in ("genre", "weak_genre", "unknown_genre") for e in s.effects):
            continue
        after = text[s.end:s.end + 30].lower()
        before = text[max(0, s.start - 24):s.start].lower()
        if re.match(r"\s*-?\s*(?:inspired|influenced|tinged|flavou?red|infused|style|esque|ish|like)\b", after) or \
                re.match(r"\s+(?:vibes?|influences?|elements|touches|feel|flavou?rs?|undertones)\b", after) or \
                re.search(r"\b(?:hint|touch|dash|bit)\s+of\s+$", before):
            s.modifier = True


def _mark_counts_and_adjectives(r: Reading, text: str) -> None:
    # "solo piano" is a piece for piano alone, not a solo section
    r.spans = [s for s in r.spans if not (_canon(s.words) == "solo" and any(
        t.start > s.end and t.start - s.end <= 2 and any(e.kind == "instrument" for e in t.effects)
        for t in r.spans))]
    for s in r.spans:
        if not any(e.kind == "section" for e in s.effects):
            continue
        before = text[max(0, s.start - 24):s.start].lower()
        m = re.search(r"\b(a couple of|couple of|one|two|three|four|a|an|single|double|\d)\s+"
                      r"(?:(big|huge|massive|heavy|hard|short|long|quick|brief|soft|quiet|extended)\s+)?$", before)
        if m:
            s.word_start = max(0, s.start - 24) + m.start()
            n = _NUMBER_WORDS.get(m.group(1))
            plural = s.words.lower().rstrip().endswith("s") and s.words.lower() not in ("chorus",)
            if n and (n > 1 or not plural):
                s.count = n if n > 1 else None
            s.adjective = m.group(2)
        else:
            m2 = re.search(r"\b(big|huge|massive|heavy|hard|short|long|quick|brief|soft|quiet|extended)\s+$", before)
            if m2:
                s.adjective = m2.group(1)
                s.word_start = max(0, s.start - 24) + m2.start()
    for i, s in enumerate(r.spans):
        if any(e.kind == "intensity" for e in s.effects):
            nxt = next((t for t in r.spans[i + 1:] if t.start - s.end <= 8), None)
            if nxt is not None and any(e.kind in ("mood", "tempo_word") for e in nxt.effects):
                nxt.intensity = s.effects[0].value
                nxt.adjective = s.words


def _unknown_genre_words(r: Reading, text: str) -> None:
    """Words shaped like a genre ("vaporcore", "glitchstep") that no table lists: nearest by family."""
    for m in re.finditer(r"\b([a-z]+-?(core|wave|step|hop|tronica|punk|gaze|metal|rock|pop|house|techno|jazz|funk"
                         r"|grass|billy))\b", text, re.IGNORECASE):
        if any(s.start <= m.start() < s.end for s in r.spans):
            continue
        word = m.group(1).lower()
        if word in ("hardcore",):
            continue
        family = next(f for suf, f in _GENRE_SUFFIXES if m.group(2).lower() == suf)
        r.spans.append(Span(m.start(), m.end(), m.group(1), [Effect("unknown_genre", word, family)]))
    r.spans.sort(key=lambda s: s.start)


def _structure_list(r: Reading, text: str) -> None:
    """'intro, verse, chorus, outro' or 'verse -> chorus -> verse': a literal section order."""
    secs = [s for s in r.spans if any(e.kind == "section" for e in s.effects) and not s.negated]
    best: list[Span] = []
    run: list[Span] = []
    for s in secs:
        if run and re.fullmatch(r"\s*(?:,|->|→|>|/|then|and then|,\s*then|-|–|\+)?\s*(?:and\s+)?(?:a\s+)?",
                                text[run[-1].end:s.start], re.IGNORECASE):
            run.append(s)
        else:
            run = [s]
        if len(run) > len(best):
            best = list(run)
    if len(best) >= 3:
        names = [next(e.value for e in s.effects if e.kind == "section") for s in best]
        r.structure_list = (names, text[best[0].start:best[-1].end].strip())
        for s in best:
            s.count = None


def _in_a_places(r: Reading, text: str) -> None:
    """'in a bakery' is a setting, never the key of A: say so when no scene explains it."""
    stop = {"with", "and", "or", "for", "to", "in", "at", "of", "that", "but", "like", "on", "by", "please"}
    for m in re.finditer(r"\b(?:in|at)\s+an?\s+((?:[a-z'-]+\s+){0,2}[a-z'-]+)\b", text):
        words = m.group(1).split()
        while len(words) > 1 and words[-1].lower() in stop or words and words[0].lower() in stop:
            words = words[:-1] if words[-1].lower() in stop else []
        if not words or any(s.start < m.end() and s.end > m.start() for s in r.spans):
            continue
        if words[0].lower() in ("hurry", "way", "row", "while", "bit", "sense", "minute", "loop"):
            continue
        phrase = m.group(0)[:m.group(0).find(m.group(1))] + " ".join(words)
        _nu(r, phrase, "a setting the interpreter has no mood for; not a key (a key reads 'in A minor')")


# -- traits: nearest style ---------------------------------------------------------------------------
def style_distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """How far two trait sets are apart: tempo, energy, electronic, acoustic and swing, plus tag overlap."""
    d = ((a["tempo"] - b["tempo"]) / 60.0) ** 2
    for k in ("energy", "electronic", "acoustic", "swing"):
        d += (a[k] - b[k]) ** 2
    ta, tb = set(a["tags"]), set(b["tags"])
    jac = len(ta & tb) / len(ta | tb) if ta | tb else 0.0
    return math.sqrt(d) + 0.8 * (1.0 - jac)


def nearest_styles(traits: dict[str, Any], n: int = 3) -> list[str]:
    """The ``n`` styles whose traits are closest to ``traits``."""
    return sorted(STYLES, key=lambda s: style_distance(traits, STYLES[s].traits))[:n]


def unknown_genre_target(name: str, family: str | None = None) -> tuple[str, str]:
    """(style, why) for a genre the composer does not play: the curated choice if there is one (checked
    against the traits: it must be among the 6 nearest), else the nearest by traits, else the family its
    name shows ("-core" metal, "-wave" synthwave, "-step" dubstep, ...)."""
    if name in _UNKNOWN_GENRES:
        traits, why, prefer = _UNKNOWN_GENRES[name]
        near = nearest_styles(traits, 6)
        if prefer in near:
            return prefer, why  # type: ignore[return-value]
        return near[0], why
    family = family if family in STYLES else DEFAULT_GENRE
    return family, f"a kind of {family} by its name"


# -- pass 4: resolution --------------------------------------------------------------------------------
def _gm_name(program: int) -> str:
    try:
        import pretty_midi

        return f"{pretty_midi.program_to_instrument_name(program).lower()} (GM {program})"
    except (ImportError, ValueError):
        return f"GM program {program}"


def _fieldrec(value: Any, source: str, words: list[str] | None = None, note: str | None = None) -> dict[str, Any]:
    return {"value": value, "source": source, "words": list(words or []), "note": note}


_OPPOSITE_MOOD = {"sad": "happy", "happy": "calm", "dark": "calm", "calm": "energetic", "energetic": "calm",
                  "epic": "calm", "tense": "calm", "romantic": "happy"}


def _pick_genre(r: Reading, negated_genres: set[str]) -> tuple[str | None, list[str], str | None, list[str]]:
    """(style, words, note, influences) from the genre words; None if the prompt names none."""
    cands: list[tuple[Span, str, str | None]] = []  # (span, style, mapping note)
    for s, e in r.of("genre", "unknown_genre"):
        if e.kind == "unknown_genre":
            target, why = unknown_genre_target(e.value, e.note if e.note in STYLES else None)
            cands.append((s, target, f"unknown genre '{s.words.lower()}' -> nearest style '{target}' ({why})"))
        else:
            cands.append((s, e.value, e.note or None))
    weak = False
    if not cands:
        cands = [(s, e.value, e.note or None) for s, e in r.of("weak_genre")]
        weak = True
    if not cands:
        return None, [], None, []
    # runs of adjacent genre words: English puts the head last ("funky disco house" is house)
    heads: list[tuple[Span, str, str | None]] = []
    influences: list[tuple[Span, str]] = []
    i = 0
    while i < len(cands):
        j = i
        while j + 1 < len(cands) and re.fullmatch(r"[\s/-]*", r.prompt[cands[j][0].end:cands[j + 1][0].start]) \
                and not cands[j + 1][0].modifier:
            j += 1
        run = cands[i:j + 1]
        head = run[-1]
        influences += [(c[0], c[1]) for c in run[:-1]]
        if head[0].modifier:
            influences.append((head[0], head[1]))
        else:
            heads.append(head)
        i = j + 1
    if not heads:  # only influences ("jazz-inspired"): the first one leads
        heads = [next(c for c in cands if c[0] is influences[0][0])]
        influences = influences[1:]
    head = heads[0]
    influences += [(h[0], h[1]) for h in heads[1:]]
    style, notes = head[1], [head[2]] if head[2] else []
    # a waltz with a style that plays in 3/4 is that style in 3/4 ("jazz waltz", "country waltz")
    if style == "waltz":
        for s, inf in influences:
            if inf != "waltz" and "3/4" in STYLES[inf].meters:
                notes.append(f"'{s.words} {head[0].words}' is {inf} in 3/4")
                influences = [(s2, i2) for s2, i2 in influences if i2 != inf] + [(head[0], "waltz")]
                style, head = inf, (s, inf, None)
                break
    infl_names = list(dict.fromkeys(i for _, i in influences if i != style))
    if infl_names:
        notes.append(f"a blend: {style} leads; {', '.join(infl_names)} recorded as influence"
                     f"{'s' if len(infl_names) > 1 else ''} (the composer plays one style; an influence's "
                     "feel is used when the prompt names none)")
    if weak:
        notes.append(f"'{head[0].words.lower()}' can be a plain word; read as the style {style} since no "
                     "other style was named")
    words = [head[0].words] + [s.words for s, _ in influences]
    if style in negated_genres:
        return None, [], None, []
    return style, words, "; ".join(notes) or None, infl_names


def interpret_request(prompt: str, *, duration_s: float, genre: str | None = None, mood: str | None = None,
                      bpm: float | None = None, key: str | None = None, instruments: list[str] | None = None,
                      structure: list[str] | None = None, seed: int | None = None, max_duration_s: float = 300.0,
                      meter: str | None = None, feel: str | None = None) -> tuple[ResolvedParams, dict[str, Any]]:
    """Merge the prompt's reading with explicit arguments (which win) into controls + the account of it."""
    from .params import _check_choice, _prompt_seed

    if not isinstance(duration_s, (int, float)) or not duration_s > 0 or duration_s > max_duration_s:
        raise ControlError("duration_s", f"must be > 0 and <= {max_duration_s:g} seconds, got {duration_s!r}")
    r = read_prompt(prompt or "")
    interp: dict[str, Any] = {}
    negated: list[dict[str, Any]] = []
    from_text: list[str] = []
    not_understood = r.not_understood

    # -- scenes: hints for mood, style and tempo
    scenes = [(s, _SCENES[e.value]) for s, e in r.of("scene")]
    for s, _ in r.of("scene", negated=True):
        _nu(r, r.neg_words(s), "a negated setting is not a control")

    # -- genre
    neg_genres: dict[str, str] = {}
    for s, e in r.of("genre", "weak_genre", "unknown_genre", negated=True):
        target = unknown_genre_target(e.value, e.note if e.note in STYLES else None)[0] \
            if e.kind == "unknown_genre" else e.value
        neg_genres[target] = r.neg_words(s)
    influences: list[str] = []
    if genre is not None:
        g = _check_choice("genre", genre, STYLES)
        interp["genre"] = _fieldrec(g, "argument")
        said, _, _, _ = _pick_genre(r, set())
        if said and said != g:
            interp["genre"]["note"] = f"the argument overrides the prompt's '{said}'"
    else:
        g_said, words, note, influences = _pick_genre(r, set(neg_genres))
        if g_said:
            g = g_said
            interp["genre"] = _fieldrec(g, "prompt", words, note)
            from_text.append("genre")
        else:
            hint = next(((s, sc) for s, sc in scenes if sc[1] and sc[1] not in neg_genres), None)
            if hint:
                g = hint[1][1]  # type: ignore[assignment]
                interp["genre"] = _fieldrec(g, "prompt", [hint[0].words], f"no style named; the setting "
                                            f"'{hint[0].words}' suggests {g} ({hint[1][3]})")
                from_text.append("genre")
            else:
                g = next(x for x in _DEFAULT_FALLBACKS if x not in neg_genres)
                note = f"no style named; the default is {DEFAULT_GENRE}"
                if g != DEFAULT_GENRE:
                    note = f"no style named and {DEFAULT_GENRE} was ruled out; {g} instead"
                interp["genre"] = _fieldrec(g, "default", [], note)
    for target, words in neg_genres.items():
        negated.append({"field": "genre", "value": target, "words": words,
                        "effect": f"the style is not {target}" + (f"; the argument chose {g}" if genre else
                                                                  f"; {g} was used")})
    gstyle = STYLES[g]

    # -- mood
    neg_moods = {e.value: r.neg_words(s) for s, e in r.of("mood", "mood_hint", negated=True)}
    pos_moods = [(s, e) for s, e in r.of("mood") if e.value not in neg_moods]
    if mood is not None:
        md = _check_choice("mood", mood, MOODS)
        interp["mood"] = _fieldrec(md, "argument")
    elif pos_moods:
        s, e = pos_moods[0]
        md = e.value
        notes = []
        if s.words.lower() != md:
            notes.append(f"'{s.words.lower()}' is read as {md}")
        if s.intensity is not None:
            notes.append(f"intensity '{s.adjective}' recorded; the composer applies a mood at one strength")
        others = list(dict.fromkeys(e2.value for _, e2 in pos_moods[1:] if e2.value != md))
        if others:
            notes.append(f"also said: {', '.join(others)} (the first mood named leads)")
        interp["mood"] = _fieldrec(md, "prompt", [s.words], "; ".join(notes) or None)
        from_text.append("mood")
    else:
        hint = next(((s, sc[0], sc[3]) for s, sc in scenes if sc[0] and sc[0] not in neg_moods), None)
        hint = hint or next(((s, e.value, e.note) for s, e in r.of("mood_hint") if e.value not in neg_moods), None)
        if hint:
            md = hint[1]
            interp["mood"] = _fieldrec(md, "prompt", [hint[0].words], f"'{hint[0].words}' suggests {md} "
                                                                      f"({hint[2]})")
            from_text.append("mood")
        else:
            md = gstyle.default_mood
            src = "style default"
            note = f"{g}'s own mood"
            if md in neg_moods:
                md = _OPPOSITE_MOOD.get(md, "calm")
                how = f"the opposite, {md}, is used"
                if md in neg_moods:
                    md = next(m for m in MOODS if m not in neg_moods)
                    how = f"its opposite is ruled out too, so {md} is used"
                src, note = "prompt", f"{g}'s own mood is {gstyle.default_mood}, which the prompt rules out; {how}"
            interp["mood"] = _fieldrec(md, src, [neg_moods[gstyle.default_mood]] if src == "prompt" else [], note)
    for value, words in neg_moods.items():
        how = ("the argument chose " if mood else "used: ") + md
        if interp["mood"]["source"] == "style default":
            how = f"the style default, {md}, is used"
        elif interp["mood"]["source"] == "prompt" and not pos_moods and "rules out" in (interp["mood"]["note"] or ""):
            how = f"{md} is used (see the mood's note)"
        elif pos_moods and mood is None:
            how = f"the mood named instead, {md}, is used"
        negated.append({"field": "mood", "value": value, "words": words, "effect": f"mood is not {value}; {how}"})
    mstyle = MOODS[md]

    # -- tempo
    tempo_word = None
    tw = r.of("tempo_word")
    tneg = r.of("tempo_word", negated=True)
    mult = r.of("tempo_mult")
    lo, hi = gstyle.tempo
    if bpm is not None:
        tempo = float(bpm)
        if not BPM_MIN <= tempo <= BPM_MAX:
            raise ControlError("bpm", f"must be between {BPM_MIN:g} and {BPM_MAX:g} beats per minute, got {bpm:g}")
        interp["tempo"] = _fieldrec(tempo, "argument")
    elif r.bpm is not None:
        tempo = r.bpm[0]
        if not BPM_MIN <= tempo <= BPM_MAX:
            raise ControlError("bpm", f"the prompt asks for {tempo:g} bpm; the tempo must be between "
                                      f"{BPM_MIN:g} and {BPM_MAX:g}")
        interp["tempo"] = _fieldrec(tempo, "prompt", [r.bpm[1]], r.bpm[2])
        from_text.append("bpm")
    else:
        frac, words, notes, src = 0.5, [], [], "style default"
        if tw:
            s, e = tw[0]
            frac, words, src = e.value, [s.words], "prompt"
            if s.intensity is not None and s.intensity >= 0.9:
                frac = 1.0 if frac > 0.5 else 0.0
            tempo_word = _canon(s.words)
            notes.append(f"'{tempo_word}' places the tempo at {round(frac * 100)}% of {g}'s range {lo:g}-{hi:g}")
        elif tneg:
            s, e = tneg[0]
            frac = 0.4 if e.value > 0.5 else 0.6
            words, src = [r.neg_words(s)], "prompt"
            tempo_word = _canon(r.neg_words(s))
            notes.append(f"'{tempo_word}': a moderate tempo in {g}'s range {lo:g}-{hi:g}")
            negated.append({"field": "tempo", "value": _canon(s.words), "words": r.neg_words(s),
                            "effect": f"tempo kept moderate ({round(frac * 100)}% of the style's range)"})
        else:
            hint = next(((s, sc) for s, sc in scenes if sc[2] is not None), None)
            if hint:
                frac, words, src = hint[1][2], [hint[0].words], "prompt"  # type: ignore[assignment]
                tempo_word = _canon(hint[0].words)
                notes.append(f"the setting '{hint[0].words}' suggests {hint[1][3]}")
            else:
                notes.append(f"the middle of {g}'s range {lo:g}-{hi:g}")
        tempo = (lo + (hi - lo) * frac) * mstyle.tempo_factor
        if mstyle.tempo_factor != 1.0:
            notes.append(f"x{mstyle.tempo_factor:g} for a {md} mood")
        if mult:
            s, e = mult[0]
            tempo *= e.value
            words.append(s.words)
            src = "prompt"
            tempo_word = tempo_word or _canon(s.words)
            notes.append(f"'{_canon(s.words)}': x{e.value:g}")
        tempo = float(round(min(BPM_MAX, max(BPM_MIN, tempo))))
        if src == "prompt":
            from_text.append("bpm")
        interp["tempo"] = _fieldrec(tempo, src, words, "; ".join(notes))
    if (bpm is not None or r.bpm is not None) and (tw or mult):
        said = ", ".join(s.words for s, _ in (tw + mult))
        interp["tempo"]["note"] = ((interp["tempo"]["note"] + "; ") if interp["tempo"]["note"] else "") + \
            f"'{said}' not applied: the stated tempo wins"

    # -- key
    if key is not None:
        pk = parse_key(key)
        if pk is None:
            raise ControlError("key", f"cannot read key {key!r}; use a note A-G with optional # or b and "
                                      "'major' or 'minor', e.g. 'A minor', 'F# major', 'Bb minor'")
        tonic, mode, written = pk
        interp["key"] = _fieldrec(None, "argument")
    elif r.key is not None:
        tonic, mode, written = parse_key(r.key[0])  # type: ignore[misc]
        interp["key"] = _fieldrec(None, "prompt", [r.key[1]])
        from_text.append("key")
    else:
        if r.mode_only is not None:
            mode, src = r.mode_only[0], "prompt"
            note = f"'{r.mode_only[1]}' sets the mode only; the tonic is chosen from a hash of the request"
            from_text.append("key")
        else:
            mode = mstyle.mode or gstyle.mode
            src = "default"
            note = (f"mode {mode} from the {md} mood" if mstyle.mode else f"mode {mode} from {g}") + \
                "; the tonic is chosen from a hash of the request"
        h = hashlib.sha256(f"{prompt}|{g}|{md}".encode()).digest()
        tonic = (0, 2, 4, 5, 7, 9, 10, 11)[h[0] % 8] if mode == "major" else (9, 2, 4, 7, 0, 5, 11, 6)[h[0] % 8]
        written = None
        interp["key"] = _fieldrec(None, src, [r.mode_only[1]] if r.mode_only else [], note)
    key_name = key_display_name(tonic, mode, written)
    interp["key"]["value"] = key_name

    # -- meter
    meter_words = r.of("meter")
    if meter is not None:
        mt = str(meter).strip()
        if mt not in METERS:
            raise ControlError("meter", f"unknown meter {meter!r}; allowed: {', '.join(METERS)}")
        interp["meter"] = _fieldrec(mt, "argument")
    elif r.meter is not None or meter_words:
        mt, words, note = r.meter if r.meter is not None else (meter_words[0][1].value, meter_words[0][0].words, None)
        if mt not in gstyle.meters:
            note = ((note + "; ") if note else "") + f"{g} is usually in {', '.join(gstyle.meters)}; {mt} as asked"
        interp["meter"] = _fieldrec(mt, "prompt", [words], note)
        from_text.append("meter")
    else:
        mt = gstyle.meters[0]
        interp["meter"] = _fieldrec(mt, "style default", [], f"{g}'s usual meter")
        if interp["genre"]["source"] == "prompt" and (g == "waltz" or "in 3/4" in (interp["genre"]["note"] or "")):
            mt = "3/4"
            interp["meter"] = _fieldrec(mt, "prompt", [w for w in interp["genre"]["words"]],
                                        "a waltz is in 3/4")
            from_text.append("meter")

    # -- feel
    feel_words = [(s, e) for s, e in r.of("feel")]
    if feel is not None:
        fl = str(feel).strip().lower()
        if fl not in FEELS:
            raise ControlError("feel", f"unknown feel {feel!r}; allowed: {', '.join(FEELS)}")
        interp["feel"] = _fieldrec(fl, "argument")
    elif feel_words:
        s, e = feel_words[0]
        fl = e.value
        interp["feel"] = _fieldrec(fl, "prompt", [s.words], None if _canon(s.words) == fl else
                                   f"'{_canon(s.words)}' is a {fl} feel")
        from_text.append("feel")
    else:
        fl = gstyle.feel
        infl = next((i for i in influences if STYLES[i].feel != "straight"), None)
        if fl == "straight" and infl:
            fl = STYLES[infl].feel
            interp["feel"] = _fieldrec(fl, "prompt", [], f"the {infl} influence brings its {fl} feel")
            from_text.append("feel")
        else:
            interp["feel"] = _fieldrec(fl, "style default", [], f"{g}'s own feel")

    # -- instruments
    neg_inst: dict[str, str] = {}
    vocal_negs = []
    for s, e in r.of("instrument", negated=True):
        if _canon(s.words) in ("vocals", "vocal", "voices", "voice"):
            vocal_negs.append(s)
            continue
        neg_inst[e.value] = r.neg_words(s)
    for s, e in r.of("drumless", negated=None):
        neg_inst["drums"] = s.words
    for s, e in r.of("unknown_instrument", negated=None):
        if s.negated:
            continue
        _nu(r, s.words, f"no {s.words} in the sound set; name one of: {', '.join(sorted(INSTRUMENTS))}")
    only: list[str] = []
    if instruments is not None:
        insts = tuple(dict.fromkeys(normalise_instrument(i) for i in instruments))
        interp["instruments"] = _fieldrec(list(insts), "argument")
    else:
        found: list[str] = []
        words_i: list[str] = []
        notes_i: list[str] = []
        for s, e in r.of("instrument"):
            if e.value in neg_inst:
                continue
            after = r.prompt[s.end:s.end + 6].lower()
            if _in_only_clause(r.prompt, s.start) or re.match(r"\s+(only|alone)\b", after):
                only.append(e.value)
            if e.value not in found:
                found.append(e.value)
                words_i.append(s.words)
                if e.note:
                    notes_i.append(e.note)
        featured = [i for i in found if i not in ("drums", "percussion")] or [i for i in found if i == "percussion"]
        # "rock with guitar", "funky bass groove": a generic name the style already plays stays the style's own
        own_progs = set(gstyle.programs.values())
        for i in list(featured):
            fam = set(_FAMILIES.get(i, ())) | ({p for p in own_progs if 32 <= p <= 39} if i == "bass" else set())
            if fam & own_progs and INSTRUMENTS[i].program not in own_progs and i not in only:
                featured.remove(i)
                notes_i.append(f"'{i}': {g} already plays one (its own is kept)")
        if featured or notes_i and found:
            insts = tuple(featured)
            interp["instruments"] = _fieldrec(list(insts), "prompt", words_i, "; ".join(notes_i) or None)
            from_text.append("instruments")
        else:
            insts = ()
            progs = {v: k for k, v in reversed(list({n: sp.program for n, sp in INSTRUMENTS.items()
                                                     if not sp.is_drum}.items()))}
            own = {role: progs.get(p) or _gm_name(p) for role, p in gstyle.programs.items()}
            interp["instruments"] = _fieldrec([], "style default", [], "the style's own parts: " +
                                              ", ".join(f"{k}: {v}" for k, v in own.items()))
    without = [i for i in neg_inst if i not in insts]
    if only:
        interp["instruments"]["note"] = ((interp["instruments"]["note"] or "") + "; " if interp["instruments"]["note"]
                                         else "") + f"only {', '.join(only)}: the other parts are left out"
    for inst, words in neg_inst.items():
        if inst in insts:
            effect = f"{inst} was also named as an argument; the argument wins"
        elif inst in ("drums", "percussion"):
            effect = "no drum or percussion part"
        elif inst in _ROLE_WORDS:
            effect = f"no {inst} part"
        elif inst in _FAMILIES:
            effect = f"no {inst} of any kind: a part that would use one is played by another instrument of its role"
        else:
            effect = f"no {inst} part: a part that would use it is played by another instrument of its role"
        negated.append({"field": "instruments", "value": inst, "words": words, "effect": effect})
    for s in [s for s, _ in r.of("no_vocals", negated=None) + r.of("vocal_ask", negated=True)] + vocal_negs:
        negated.append({"field": "vocals", "value": "vocals", "words": s.words if not s.negated else
                        r.neg_words(s), "effect": "instrumental: the composer never sings"})
        break
    for s, e in r.of("vocal_ask"):
        _nu(r, s.words, "the composer writes instrumental music; nothing is sung")

    # -- structure
    neg_secs = {e.value: r.neg_words(s) for s, e in r.of("section", negated=True)}
    pos_secs = [(s, e) for s, e in r.of("section") if e.value not in neg_secs]
    if structure is not None:
        if not structure:
            raise ControlError("structure", f"needs at least one section; allowed: {', '.join(SECTIONS)}")
        struct = tuple(normalise_section(x) for x in structure)
        interp["structure"] = _fieldrec(list(struct), "argument")
    elif r.structure_list is not None:
        struct = tuple(x for x in r.structure_list[0] if x not in neg_secs)
        interp["structure"] = _fieldrec(list(struct), "prompt", [r.structure_list[1]],
                                        "the section order as written; sections are fitted to the length "
                                        "in 4- and 8-bar phrases")
        from_text.append("structure")
    elif pos_secs or neg_secs:
        struct, notes = _edit_structure(tuple(gstyle.structure), pos_secs, neg_secs)
        words = [" ".join(r.prompt[s.word_start if s.word_start is not None else s.start:s.end].split())
                 for s, _ in pos_secs] + list(neg_secs.values())
        interp["structure"] = _fieldrec(list(struct), "prompt", words, "; ".join(notes) or None)
        from_text.append("structure")
    else:
        struct = tuple(gstyle.structure)
        interp["structure"] = _fieldrec(list(struct), "style default", [], f"{g}'s form, fitted to the length")
    for sec, words in neg_secs.items():
        negated.append({"field": "structure", "value": sec, "words": words,
                        "effect": f"no {sec} section" if structure is None else
                        f"the structure argument wins ({'has' if sec in struct else 'has no'} {sec})"})
    for s, e in r.of("not_control", negated=None):
        _nu(r, s.words, e.note)

    if seed is None:
        seed = _prompt_seed(prompt or "", float(duration_s), g, md, tempo, key_name)
    elif not 0 <= int(seed) <= 2**31 - 1:
        raise ControlError("seed", f"must be between 0 and {2**31 - 1}, got {seed}")
    kwargs: dict[str, Any] = {}
    fields = ResolvedParams.__dataclass_fields__
    if "without" in fields:
        kwargs["without"], kwargs["only"] = tuple(without), tuple(only)
    params = ResolvedParams(prompt=prompt or "", duration_s=float(duration_s), genre=g, mood=md, bpm=tempo,
                            key_tonic=tonic, key_mode=mode, key=key_name, instruments=insts, structure=struct,
                            seed=int(seed), from_text=tuple(dict.fromkeys(from_text)), tempo_word=tempo_word,
                            meter=mt, feel=fl, **kwargs)
    interp["not_understood"] = not_understood
    interp["negated"] = negated
    return params, interp


def _in_only_clause(prompt: str, pos: int) -> bool:
    """Whether ``pos`` follows "solo"/"only"/"just" in the same list ("just strings and piano")."""
    clause = re.split(r"[,.;:!?]|(?<!nothing )\bbut\b|\bwith\b", prompt[:pos], flags=re.IGNORECASE)[-1].lower()
    return bool(re.search(r"\b(solo|only|just|nothing\s+but)\b(?:\s+(?:a|an|the|some))?\s+"
                          r"(?:[\w-]+(?:\s*(?:,|&|and|\+)\s*|\s+))*$", clause))


def _edit_structure(base: tuple[str, ...], pos: list[tuple[Span, Effect]],
                    neg: dict[str, str]) -> tuple[tuple[str, ...], list[str]]:
    """The style's form with the prompt's asks applied: sections added where they belong, counts set,
    ruled-out sections removed."""
    s = [x for x in base if x not in neg]
    notes: list[str] = []
    for span, e in pos:
        sec = e.value
        if span.adjective in ("short", "long", "quick", "brief", "extended"):
            notes.append(f"'{span.adjective} {sec}' recorded; section lengths follow the piece's length "
                         "(4- and 8-bar phrases)")
        elif span.adjective in ("big", "huge", "massive", "heavy", "hard"):
            notes.append(f"'{span.adjective} {sec}': the {sec} is the loudest section")
        if span.count:
            have = s.count(sec)
            if have > span.count:
                for _ in range(have - span.count):
                    idx = len(s) - 1 - s[::-1].index(sec)
                    del s[idx]
                    if sec == "verse" and idx < len(s) and s[idx] in ("chorus", "prechorus") and \
                            s.count("chorus") > span.count:
                        del s[idx]
            while s.count(sec) < span.count:
                _insert_section(s, sec, force=True)
            notes.append(f"{span.count} x {sec}")
        elif sec not in s:
            _insert_section(s, sec)
            notes.append(f"{sec} added")
    if not s:
        s = [x for x in ("verse", "chorus") if x not in neg] or ["verse"]
    return tuple(s), notes


def _insert_section(s: list[str], sec: str, force: bool = False) -> None:
    if sec == "intro":
        s.insert(0, "intro")
    elif sec == "outro":
        s.append("outro")
    elif sec == "drop":
        end = len(s) - 1 if s and s[-1] == "outro" else len(s)
        s[end:end] = ["build", "drop"] if "build" not in s or force is False and "build" not in s else ["drop"]
    elif sec in ("bridge", "solo", "breakdown", "interlude"):
        last_chorus = max((i for i, x in enumerate(s) if x in ("chorus", "drop", "head", "hook")), default=None)
        idx = last_chorus if last_chorus is not None else (len(s) - 1 if s and s[-1] == "outro" else len(s))
        s.insert(idx, sec)
    elif sec == "prechorus":
        for i in [i for i, x in enumerate(s) if x == "chorus"][::-1]:
            s.insert(i, "prechorus")
        if "chorus" not in s:
            s.append("prechorus")
    else:  # verse, chorus, hook, build: before the outro, with its partner
        end = len(s) - 1 if s and s[-1] == "outro" else len(s)
        pair = {"verse": ["verse", "chorus"] if not force else ["verse"], "chorus": ["chorus"]}.get(sec, [sec])
        s[end:end] = pair


def parse_prompt_compat(prompt: str) -> dict[str, Any]:
    """The old ``parse_prompt`` view: only the fields the prompt itself states (genre, mood, bpm, key,
    tempo word, instruments), for callers that compare what the text says with the arguments."""
    try:
        params, interp = interpret_request(prompt or "", duration_s=1.0)
    except ControlError:  # an impossible tempo in the text: still say what the rest of it says
        said = read_prompt(prompt or "").bpm
        params, interp = interpret_request(prompt or "", duration_s=1.0, bpm=120.0)
        interp["tempo"] = _fieldrec(said[0] if said else None, "prompt", [said[1]] if said else [])
    out: dict[str, Any] = {}
    for name, fld in (("genre", "genre"), ("mood", "mood"), ("key", "key"), ("instruments", "instruments"),
                      ("meter", "meter"), ("feel", "feel")):
        if interp[fld]["source"] == "prompt":
            out[name] = interp[fld]["value"]
    if interp["tempo"]["source"] == "prompt":
        if interp["tempo"]["words"] and params.tempo_word is None:
            out["bpm"] = interp["tempo"]["value"]
        else:
            out["tempo_word"] = params.tempo_word
    return out


# -- applying what the prompt ruled out -----------------------------------------------------------------
# Same-role stand-ins when a part's instrument is ruled out ("no piano" in a style whose chords are piano).
_ROLE_ALTERNATIVES = {"chords": (0, 4, 25, 48, 16), "bass": (33, 32, 38, 34), "lead": (73, 65, 11, 80, 40),
                      "pad": (89, 48, 52, 16), "texture": (89, 48, 52, 11), "arpeggio": (11, 46, 8, 0),
                      "counter": (42, 60, 71, 57), "percussion": (), "drums": ()}


# Generic names rule out the whole family ("no guitar" is no guitar of any kind); "no bass" is no bass part.
_FAMILIES: dict[str, range] = {"piano": range(0, 4), "guitar": range(24, 32), "electric guitar": range(26, 32),
                               "synth": range(80, 104), "strings": range(40, 52), "pad": range(88, 96),
                               "synth pad": range(88, 96), "brass": range(56, 64), "organ": range(16, 24),
                               "choir": range(52, 55), "saxophone": range(64, 68), "sax": range(64, 68)}
_ROLE_WORDS = {"bass": "bass"}


def limit_parts(arrangement: Any, without: tuple[str, ...] | list[str],
                only: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Apply "no drums" / "without piano" / "solo piano" to a composed arrangement, in place.

    A ruled-out drum kit or percussion part is removed; a part whose instrument is ruled out is
    played by another instrument of the same role (its notes stay, so the harmony is complete).
    ``only`` keeps just the parts played by those instruments. Returns what was done, for the result.
    """
    removed: list[str] = []
    replaced: dict[str, str] = {}
    if not without and not only:
        return {}
    banned: set[int] = set()
    for i in without:
        if i in INSTRUMENTS and not INSTRUMENTS[i].is_drum:
            banned |= set(_FAMILIES.get(i, (INSTRUMENTS[i].program,)))
    no_drums = any(i in ("drums", "percussion") for i in without)
    no_roles = {_ROLE_WORDS[i] for i in without if i in _ROLE_WORDS}
    kept = []
    for t in arrangement.tracks:
        if (t.is_drum and no_drums) or t.role in no_roles:
            removed.append(t.name)
            continue
        if not t.is_drum and t.program in banned:
            alt = next((p for p in _ROLE_ALTERNATIVES.get(t.role, ()) if p not in banned and p != t.program), None)
            if alt is None:
                removed.append(t.name)
                continue
            replaced[t.name] = f"GM {t.program} -> GM {alt}"
            t.program = alt
        kept.append(t)
    if only:
        want = {p for i in only if i in INSTRUMENTS and not INSTRUMENTS[i].is_drum
                for p in _FAMILIES.get(i, (INSTRUMENTS[i].program,))}
        roles = {_ROLE_WORDS[i] for i in only if i in _ROLE_WORDS}
        drums = any(INSTRUMENTS[i].is_drum for i in only if i in INSTRUMENTS)
        chosen = [t for t in kept if (t.is_drum and drums) or (not t.is_drum and (t.program in want or
                                                                                   t.role in roles))]
        if chosen:
            removed += [t.name for t in kept if t not in chosen]
            kept = chosen
    arrangement.tracks = kept
    out: dict[str, Any] = {}
    if removed:
        out["left_out"] = removed
    if replaced:
        out["reprogrammed"] = replaced
    return out


def musicgen_interpretation(interp: dict[str, Any], applied: dict[str, Any], not_applied: dict[str, Any],
                            left_to_model: list[str]) -> dict[str, Any]:
    """The interpretation as MusicGen sees it: it reads the (possibly extended) prompt text itself, so
    each field says whether it was added to that text, is in it already, or was left to the model; the
    composer's defaults (a hashed key, a style's tempo) are not imposed and are not claimed."""
    names = {"genre": "genre", "mood": "mood", "tempo": "bpm", "key": "key", "instruments": "instruments",
             "structure": "structure", "meter": "meter", "feel": "feel"}
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in interp.items()}
    for fld, ctl in names.items():
        rec = out.get(fld)
        if not isinstance(rec, dict):
            continue
        if ctl in applied:
            rec["musicgen"] = applied[ctl]["how"]
        elif ctl in not_applied:
            rec["musicgen"] = "not applied: " + not_applied[ctl]["reason"]
        elif ctl in left_to_model:
            rec["musicgen"] = "left to the model (nothing was added to its prompt)"
            if rec["source"] in ("default", "style default"):
                rec["value"] = None
    if out.get("negated"):
        out["negated"] = [dict(n, musicgen="MusicGen reads the prompt as written; its text encoder does not "
                                           "reliably follow negation") for n in out["negated"]]
    return out
